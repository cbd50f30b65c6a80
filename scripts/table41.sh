#!/usr/bin/env bash
# Thesis Table 4.1 on MNIST: the five SDE configurations (VE with its geometric σ(t), VP-linear,
# VP-cosine, subVP-linear, subVP-cosine) × two seeds, trained one after the other for the same number of
# steps, each evaluated inside its run folder, then `sdegen report OUT` (table, violins, loss curves).
#
#   bash scripts/table41.sh [OUT]                  # OUT defaults to outputs/table41; `make table41`
#
# The recipe is `experiment=sde_sweep` (configs/experiment/sde_sweep.yaml): its five configurations, as its
# dry run lists them, each trained as a single run (hydra.mode=RUN) with the experiment's loss=sigma2
# (t ~ U(eps, T) of the SDE, λ = σ², so each SDE trains its own noise levels) and model.conditional=false
# (unconditional as in the thesis), the EDM preconditioning of the default network
# (`TRAIN_OVERRIDES=model.preconditioning=eps` is the thesis's ε-network too; it learns far slower:
# judge Fréchet 250–650 at 600 steps).  Everything else is the `sdegen train` default (batch, lr, EMA,
# network), one thread.  Each run's eval: N_SAMPLES samples with the default fast sampler
# (sampler=dpm_solver), metric=all (FID, KID, precision/recall with the offline Inception against
# REF_SIZE seeded MNIST test digits; IS is skipped offline with the reason in metrics.json), the digit
# judge's Fréchet distance and IS in its class space (eval.judge), and bits/dim on BPD_N test digits
# (probability-flow ODE, BPD_PROBES Hutchinson probes, tolerance BPD_TOL).  Every eval uses seed=0, so all
# runs are scored on the same test digits and the same sampler noise.
#
# Resumable: a run with train_summary.json is not retrained (a run folder without it, left by an
# interrupted run, is deleted and trained again); a run with eval/metrics.json is not re-evaluated.
# Runs go seed by seed (all five configurations of seed 1 first), so a cut-short table still has N=1.
#
# env: STEPS=1500  SEEDS="1 2"  N_SAMPLES=500  REF_SIZE=1000  BPD_N=100  BPD_PROBES=2  BPD_TOL=1e-3
#      TRAIN_OVERRIDES="" (keys on top of the experiment, e.g. model.preconditioning=eps)
#      JUDGE=outputs/judge/digit_judge.pt (scripts/digit_judge.py train)  MNIST_ROOT=../shared/data
#      PYTHON=.venv/bin/python  NICE=0 (nice level of every command)  ONLY_REPORT=1 (skip to the report)
#      ONLY="ve-geometric vp-linear" (a subset of the configurations, e.g. for a quick check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/table41}
PYTHON=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-1500}
SEEDS=${SEEDS:-"1 2"}
N_SAMPLES=${N_SAMPLES:-500}
REF_SIZE=${REF_SIZE:-1000}
BPD_N=${BPD_N:-100}
BPD_PROBES=${BPD_PROBES:-2}
BPD_TOL=${BPD_TOL:-1e-3}
JUDGE=${JUDGE:-outputs/judge/digit_judge.pt}
MNIST_ROOT=${MNIST_ROOT:-../shared/data}
NICE=${NICE:-0}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

sdegen() { nice -n "$NICE" "$PYTHON" -m sdegen "$@"; }
[ -f "$JUDGE" ] || { echo "table41: no digit judge at $JUDGE (python scripts/digit_judge.py train)" >&2; exit 2; }
mkdir -p "$OUT"
# the experiment's configurations ("ve geometric", "vp linear", ...), from its dry run
mapfile -t CONFIGS < <(sdegen train experiment=sde_sweep dry_run=true hydra.sweep.dir="$OUT/.dry_run" \
    | sed -n 's/^\[sdegen\] dry run: train sde=\([a-z]*\) schedule=\([a-z]*\) .*/\1 \2/p')
rm -rf "$OUT/.dry_run"
[ "${#CONFIGS[@]}" -gt 0 ] || { echo "table41: experiment=sde_sweep lists no configuration" >&2; exit 2; }

if [ "${ONLY_REPORT:-0}" != 1 ]; then
  for seed in $SEEDS; do
    for pair in "${CONFIGS[@]}"; do
      read -r sde schedule <<<"$pair"
      run="$OUT/${sde}-${schedule}-seed${seed}"
      if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" ${sde}-${schedule} "* ]]; then continue; fi
      if [ ! -f "$run/train_summary.json" ]; then
        rm -rf "$run"
        echo "[$(date -u +%T)] train $run ($STEPS steps)"
        sdegen train experiment=sde_sweep hydra.mode=RUN sde="$sde" schedule="$schedule" ${TRAIN_OVERRIDES:-} \
            trainer.max_steps="$STEPS" seed="$seed" threads=1 logger=csv trainer.enable_progress_bar=false \
            hydra.run.dir="$run"
      fi
      if [ ! -f "$run/eval/metrics.json" ]; then
        echo "[$(date -u +%T)] eval $run"
        sdegen eval ckpt="$run" metric=all sampler=dpm_solver n_samples="$N_SAMPLES" seed=0 \
            eval.mnist_root="$MNIST_ROOT" eval.ref_size="$REF_SIZE" eval.judge="$JUDGE" \
            eval.bpd.n_points="$BPD_N" eval.bpd.n_probes="$BPD_PROBES" eval.bpd.rtol="$BPD_TOL" \
            eval.bpd.atol="$BPD_TOL" progress=false hydra.run.dir="$run/eval"
      fi
    done
  done
fi
echo "[$(date -u +%T)] report"
sdegen report "$OUT"
echo "report: $OUT/report/index.md"
