"""Training throughput: the Lightning training step of ``sdegen train`` against a plain PyTorch loop
with the same model, loss, batch, optimiser, gradient clipping, EMA and device.

    python scripts/bench_train.py [--steps 30] [--batch 64] [--models scorenet ncsnpp] [--device auto]

Prints images/s of both, their ratio (target ≥ 0.9) and peak memory (CUDA: max allocated; CPU: peak
RSS of the process, cumulative, so only an upper bound for the second run).

    python scripts/bench_train.py --recipe "" --recipe "model.patch_size=1 model.channels=[16,32,64]" \
        --threads 1 2 [--steps 50]

times the plain loop of the scorenet for each recipe (space-separated config overrides) at each torch
thread count and prints ms per step: the per-step cost behind equal-cost recipe comparisons and the
``threads`` default.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

from sdegen.runtime.config import build_sde
from sdegen.training.callbacks import build_callbacks
from sdegen.training.module import ScoreModule

REPO = Path(__file__).resolve().parents[1]
SHAPES = {"scorenet": (1, 28, 28), "ncsnpp": (3, 32, 32)}
DATA = {"scorenet": "mnist_embedded", "ncsnpp": "cifar10"}


class Data:  # what ScoreModule needs from a data module
    def __init__(self, shape):
        self.shape, self.num_classes, self.is_image = shape, 10, True


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(model_name, overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", f"data={DATA[model_name]}", "logger=none",
                                          *overrides])
    sde = build_sde(cfg)
    return cfg, sde, ScoreModule(cfg, sde, Data(SHAPES[model_name]))


class Timer(L.Callback):
    def __init__(self, warmup):
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.end = time.perf_counter()


def bench_lightning(model_name, batch, steps, warmup, device, overrides):
    cfg, sde, module = make(model_name, overrides)
    x = torch.randn(batch * (steps + warmup), *SHAPES[model_name])
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch, shuffle=False)
    timer = Timer(warmup)
    callbacks = [cb for cb in build_callbacks(cfg, Path("/tmp/sdegen_bench")) if "WeightAveraging" in type(cb).__name__]
    trainer = L.Trainer(accelerator=device.type, devices=1, max_steps=steps + warmup, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=cfg.optim.grad_clip, limit_val_batches=0, callbacks=[*callbacks, timer])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(module, train_dataloaders=loader)
    return steps * batch / (timer.end - timer.start), peak_memory_mb(device)


def bench_plain(model_name, batch, steps, warmup, device, overrides):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    cfg, sde, module = make(model_name, overrides)
    model = module.model.to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema.decay), use_buffers=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.optim.warmup))
    x = torch.randn(batch * (steps + warmup), *SHAPES[model_name])
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch, shuffle=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    for i, (xb, _) in enumerate(loader):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss, _, _ = module.loss_fn(model, xb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        ema.update_parameters(model)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start), peak_memory_mb(device)


def bench_recipes(recipes, threads, batch, steps, warmup):
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for recipe in recipes:
            torch.manual_seed(0)
            images_per_s, _ = bench_plain("scorenet", batch, steps, warmup, torch.device("cpu"), recipe.split())
            rows.append((n_threads, recipe or "(default)", 1000 * batch / images_per_s))
            print(f"threads {n_threads}  {rows[-1][1]:<60}{rows[-1][2]:>8.0f} ms/step", flush=True)
    print(f"\n| threads | recipe | batch | ms/step |\n|---|---|---|---|")
    for n_threads, recipe, ms in rows:
        print(f"| {n_threads} | {recipe} | {batch} | {ms:.0f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["scorenet", "ncsnpp"])
    p.add_argument("--batch", type=int, default=None, help="default: 64 (scorenet), 16 on CPU / 128 on GPU (ncsnpp)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--ncsnpp-nf", type=int, default=None, help="override model.nf (default: the config's; 32 on CPU)")
    p.add_argument("--recipe", action="append", default=None,
                   help="config overrides of one scorenet recipe (repeat); prints ms/step per recipe and thread count")
    p.add_argument("--threads", type=int, nargs="+", default=None)
    args = p.parse_args()
    if args.recipe is not None:
        return bench_recipes(args.recipe, args.threads or [torch.get_num_threads()], args.batch or 64, args.steps,
                             args.warmup)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    rows = []
    for name in args.models:
        overrides, batch = [], args.batch or 64
        if name == "ncsnpp":
            batch = args.batch or (128 if device.type == "cuda" else 16)
            nf = args.ncsnpp_nf or (None if device.type == "cuda" else 32)
            overrides = [f"model.nf={nf}"] if nf else []
        torch.manual_seed(0)
        plain, plain_mem = bench_plain(name, batch, args.steps, args.warmup, device, overrides)
        torch.manual_seed(0)
        light, light_mem = bench_lightning(name, batch, args.steps, args.warmup, device, overrides)
        rows.append((name + (" " + " ".join(overrides) if overrides else ""), batch, plain, light, light / plain,
                     plain_mem, light_mem))
    print(f"\ndevice: {device} (torch threads: {torch.get_num_threads()})")
    print(f"{'model':<22}{'batch':>6}{'plain img/s':>13}{'lightning img/s':>17}{'ratio':>7}{'peak MB plain':>15}{'peak MB light':>15}")
    for name, batch, plain, light, ratio, pm, lm in rows:
        print(f"{name:<22}{batch:>6}{plain:>13.1f}{light:>17.1f}{ratio:>7.2f}{pm:>15.0f}{lm:>15.0f}")


if __name__ == "__main__":
    main()
