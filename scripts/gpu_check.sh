#!/usr/bin/env bash
# GPU check of the training speed options (docs/benchmarks.md, "Training speed"), about 10 min on one GPU
# (each step has its own timeout):
#   1. scripts/bench_train.py on NCSN++ (CIFAR-10 shapes, synthetic batches): images/s Lightning vs a plain
#      PyTorch loop and peak CUDA memory for fp32, bf16-mixed, bf16+channels-last, bf16+channels-last+compile
#      -> $OUT/bench.md (+ bench.log)
#   2. a 200-step `sdegen train model=ncsnpp data=cifar10 trainer.precision=bf16-mixed channels_last=true` run
#      on the CIFAR-10 npz subset (synthetic CIFAR-shaped images when no subset is found), then
#      load_score_model on its checkpoint -> $OUT/train.log, train_metrics.csv, train_samples.png
#
#   bash scripts/gpu_check.sh                 # on the GPU machine; OUT defaults to outputs/gpu_check
#   SMOKE=1 bash scripts/gpu_check.sh         # tiny settings on the CPU: proves the script end to end
#                                             # (SMOKE_COMPILE=1: the compile variant too, minutes on a CPU)
#
# Environment: OUT, PYTHON (python3), DATA_ROOT (a folder holding cifar10/train_10k.npz and test_1k.npz; default:
# the first of ../shared/data, shared/data, .devsite/data that has them), STEPS (timed bench steps, 30),
# WARMUP (5), BATCH (128), TRAIN_STEPS (200), TRAIN_COMPILE=1 (also compile=true in the training run).
# hydra-core/omegaconf/antlr4 (pure Python) are taken from .devsite/ when the machine's Python lacks them.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! $PY -c "import hydra, omegaconf" 2>/dev/null; then
  if [ -d "$ROOT/.devsite" ]; then
    export PYTHONPATH="$PYTHONPATH:$ROOT/.devsite"
  else
    echo "gpu_check: hydra-core/omegaconf missing and no .devsite/ (pip install -e . first)" >&2
    exit 1
  fi
fi
STATUS=0
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then  # CPU, tiny network, 2 timed steps
  BENCH_ARGS=(--device cpu --batch 2 --steps 2 --warmup 1 --ncsnpp-nf 8 --override "model.ch_mult=[1,2]"
              --override model.num_res_blocks=1 --override "model.attn_resolutions=[]")
  TRAIN_ARGS=(trainer.accelerator=cpu model.nf=8 "model.ch_mult=[1,2]" model.num_res_blocks=1 data.batch_size=4
              data.num_workers=0 val_every=2 trainer.limit_val_batches=1 checkpoint.every_n_steps=2
              sample_grid.n_samples=4 sample_grid.sampler.steps=2 threads=1)
  TRAIN_STEPS=${TRAIN_STEPS:-3}
  LIMITS=(1200 1200 1200 1200)
else
  BENCH_ARGS=(--device cuda --batch "${BATCH:-128}" --steps "${STEPS:-30}" --warmup "${WARMUP:-5}")
  TRAIN_ARGS=(trainer.accelerator=gpu data.num_workers=4 val_every=100 checkpoint.every_n_steps=100 threads=null)
  TRAIN_STEPS=${TRAIN_STEPS:-200}
  LIMITS=(90 90 250 150)  # seconds: the three bench calls and the training run (≤ 10 min in all)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi

# --- 1. bench: fp32 and bf16, then bf16 + channels-last, then bf16 + channels-last + compile ------------------
rm -f "$OUT/bench.md"
VARIANTS=("--precision 32-true bf16-mixed" "--precision bf16-mixed --channels-last"
          "--precision bf16-mixed --channels-last --compile")
[ "$SMOKE" = 1 ] && [ "${SMOKE_COMPILE:-0}" != 1 ] && unset 'VARIANTS[2]'  # CPU compile: minutes
for i in "${!VARIANTS[@]}"; do
  variant=${VARIANTS[$i]}
  echo "== bench_train.py $variant" | tee -a "$OUT/bench.log"
  # shellcheck disable=SC2086
  timeout "${LIMITS[$i]}" $PY scripts/bench_train.py --models ncsnpp "${BENCH_ARGS[@]}" $variant --out "$OUT/bench.md" \
    2>&1 | grep -v -E "Warning|warn\(|^\s*$" | tee -a "$OUT/bench.log" || STATUS=1
done

# --- 2. a short bf16-mixed training run on CIFAR-10 -----------------------------------------------------------
DATA=${DATA_ROOT:-}
if [ -z "$DATA" ]; then
  for d in ../shared/data shared/data .devsite/data; do
    [ -f "$d/cifar10/train_10k.npz" ] && [ -f "$d/cifar10/test_1k.npz" ] && { DATA=$d; break; }
  done
fi
if [ -z "$DATA" ]; then  # no CIFAR-10 subset here: synthetic CIFAR-shaped images (speed and plumbing only)
  DATA=$(mktemp -d)
  mkdir -p "$DATA/cifar10"
  $PY -c "
import numpy as np, sys
rng = np.random.default_rng(0)
for name, n in (('train_10k', 2048), ('test_1k', 256)):
    np.savez(f'{sys.argv[1]}/cifar10/{name}.npz', images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 10, n, dtype=np.uint8))" "$DATA"
  echo "gpu_check: no CIFAR-10 npz subset found: training on synthetic images in $DATA" | tee -a "$OUT/train.log"
fi
RUN=$(mktemp -d)/run
EXTRA=()
[ "${TRAIN_COMPILE:-0}" = 1 ] && EXTRA=(compile=true)
echo "== sdegen train (data: $DATA, run: $RUN)" | tee -a "$OUT/train.log"
timeout "${LIMITS[3]}" $PY -m sdegen train model=ncsnpp data=cifar10 "data.root=$(cd "$DATA" && pwd)" data.download=false \
  data.source=npz trainer.precision=bf16-mixed channels_last=true "trainer.max_steps=$TRAIN_STEPS" logger=csv \
  trainer.enable_progress_bar=false "${TRAIN_ARGS[@]}" "${EXTRA[@]}" "hydra.run.dir=$RUN" 2>&1 \
  | grep -v -E "Warning|warn\(" | tee -a "$OUT/train.log" || STATUS=1
$PY - "$RUN" <<'EOF' 2>&1 | tee -a "$OUT/train.log" || STATUS=1
import sys, torch
from sdegen.runtime.checkpoints import load_score_model
ckpt = torch.load(f"{sys.argv[1]}/checkpoints/last.ckpt", weights_only=True, map_location="cpu")
assert not any("_orig_mod" in k for k in ckpt["state_dict"]), "compiled names in the checkpoint"
model, cfg = load_score_model(sys.argv[1])
x = torch.randn(2, *cfg["data_info"]["shape"])
out = model(x, torch.full((2,), 0.5))
print(f"checkpoint: step {ckpt['global_step']}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
      f"precision {cfg['trainer']['precision']}, channels_last {cfg['channels_last']}, compile {cfg['compile']}; "
      f"loads with load_score_model, score finite: {bool(torch.isfinite(out).all())}")
EOF
cp "$RUN/csv/metrics.csv" "$OUT/train_metrics.csv" 2>/dev/null || STATUS=1
last_png=$(ls "$RUN"/samples/*.png 2>/dev/null | tail -n 1)
[ -n "$last_png" ] && cp "$last_png" "$OUT/train_samples.png"
echo "== bench table ($OUT/bench.md)"
cat "$OUT/bench.md"
exit $STATUS
