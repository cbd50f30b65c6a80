"""Training throughput (``scripts/bench_train.py``): the Lightning training step of ``sdegen train`` against
a plain PyTorch loop with the same model, loss, batch, optimiser, gradient clipping, EMA and device, for each
precision and speed option (channels-last, ``torch.compile``); each loop records what the network's forward
saw, so a row shows that the variant it names really ran."""

from __future__ import annotations

import contextlib
import gc
import resource
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

from ..runtime.config import build_sde, config_dir
from ..training.callbacks import HostCountedAveragedModel, build_callbacks, ema_multi_avg_fn
from ..training.module import ScoreModule
from ..training.speed import compile_network, to_channels_last

SHAPES = {"scorenet": (1, 28, 28), "ncsnpp": (3, 32, 32)}
DATA = {"scorenet": "mnist_embedded", "ncsnpp": "cifar10"}


class Data:  # what ScoreModule needs from a data module
    def __init__(self, shape):
        self.shape, self.num_classes, self.is_image = shape, 10, True


#: precisions of --precision (Lightning's trainer.precision values the plain loop reproduces)
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def autocast(device, precision):
    """What Lightning's mixed-precision plugin wraps the step in."""
    if precision == "32-true":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16)


def variant_overrides(channels_last=False, compile=False, compile_mode="default"):
    return [
        f"channels_last={str(bool(channels_last)).lower()}",
        f"compile={str(bool(compile)).lower()}",
        f"compile_mode={compile_mode}",
    ]


class Probe:
    """Wraps ``DSMLoss``: records what the network's first forward saw (autocast dtype, NHWC input,
    compiled call), so the table shows that each loop ran the variant it names."""

    def __init__(self, loss_fn):
        self.loss_fn, self.seen = loss_fn, None

    def __call__(self, model, x, y=None, **kwargs):
        def score_fn(*args):
            if self.seen is None:
                device_type = args[0].device.type
                self.seen = {
                    "autocast": str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")
                    if torch.is_autocast_enabled(device_type)
                    else "off",
                    "channels_last": bool(
                        args[0].dim() == 4
                        and args[0].shape[1] > 1
                        and args[0].is_contiguous(memory_format=torch.channels_last)
                    ),
                    "compiled": getattr(model, "_compiled_call_impl", None) is not None,
                }
            return model(*args)

        return self.loss_fn(score_fn, x, y, **kwargs)


def reset(device):
    gc.collect()
    torch._dynamo.reset()  # each run compiles its own network (no cache entries of another run)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(model_name, overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", f"data={DATA[model_name]}", "logger=none", *overrides])
    sde = build_sde(cfg)
    return cfg, sde, ScoreModule(cfg, sde, Data(SHAPES[model_name]))


class Timer(L.Callback):
    """Times the steps after ``warmup``: from the start of that batch to the end of the last one (after
    the EMA update, which runs in an earlier callback), not Lightning's end-of-fit hooks (epoch-end
    metrics, the EMA copied into the model), a fixed cost that made 20 timed CPU steps of the scorenet
    read 0.83× where 80 read 1.01×."""

    def __init__(self, warmup):
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= trainer.max_steps:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.end = time.perf_counter()


def bench_lightning(model_name, batch, steps, warmup, device, overrides, precision="32-true"):
    """(images/s, peak MB, what the network saw): ``ScoreModule`` under ``lightning.Trainer``; the speed
    options come through the config (``overrides``), ``precision`` through the Trainer."""
    reset(device)
    cfg, sde, module = make(model_name, overrides)
    module.loss_fn = probe = Probe(module.loss_fn)
    x = torch.randn(batch * (steps + warmup), *SHAPES[model_name])
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch, shuffle=False)
    timer = Timer(warmup)
    callbacks = [cb for cb in build_callbacks(cfg, Path("/tmp/sdegen_bench")) if "WeightAveraging" in type(cb).__name__]
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=steps + warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=cfg.optim.grad_clip,
        limit_val_batches=0,
        callbacks=[*callbacks, timer],
        precision=precision,
    )
    trainer.fit(module, train_dataloaders=loader)
    return steps * batch / (timer.end - timer.start), peak_memory_mb(device), probe.seen


def bench_plain(model_name, batch, steps, warmup, device, overrides, precision="32-true"):
    """The same step as a plain PyTorch loop: autocast for ``precision`` (a GradScaler for 16-mixed),
    channels-last batches and ``nn.Module.compile`` when the config (``overrides``) asks for them."""
    reset(device)
    cfg, sde, module = make(model_name, overrides)
    model = module.model.to(device)  # channels_last=true: ScoreModule already converted the weights
    # the EMA `sdegen train` runs (train.yaml's ema: the power function of EDM2 by default), sync-free as there
    ema = HostCountedAveragedModel(
        model, use_buffers=True, multi_avg_fn=ema_multi_avg_fn(float(cfg.ema.decay or 0.999), cfg.ema.get("sigma_rel"))
    )
    if cfg.get("compile"):
        compile_network(model, cfg.get("compile_mode"), device)  # after the EMA copy, as in ScoreModule.setup
    loss_fn = Probe(module.loss_fn)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.optim.warmup))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    x = torch.randn(batch * (steps + warmup), *SHAPES[model_name])
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch, shuffle=False)
    model.train()
    for i, (xb, _) in enumerate(loader):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        xb = xb.to(device)
        if cfg.get("channels_last"):
            xb = to_channels_last(xb)
        with autocast(device, precision):
            loss, _, _ = loss_fn(model, xb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        ema.update_parameters(model)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start), peak_memory_mb(device), loss_fn.seen


def bench_recipes(recipes, threads, batch, steps, warmup):
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for recipe in recipes:
            torch.manual_seed(0)
            images_per_s, _, _ = bench_plain("scorenet", batch, steps, warmup, torch.device("cpu"), recipe.split())
            rows.append((n_threads, recipe or "(default)", 1000 * batch / images_per_s))
            print(f"threads {n_threads}  {rows[-1][1]:<60}{rows[-1][2]:>8.0f} ms/step", flush=True)
    print("\n| threads | recipe | batch | ms/step |\n|---|---|---|---|")
    for n_threads, recipe, ms in rows:
        print(f"| {n_threads} | {recipe} | {batch} | {ms:.0f} |")


def seen_text(seen) -> str:
    layout = "NHWC" if seen["channels_last"] else "NCHW"
    return f"{seen['autocast']}/{layout}/{'compiled' if seen['compiled'] else 'eager'}"


def run_variants(
    models,
    precisions,
    *,
    channels_last=False,
    compile=False,
    compile_mode="default",
    batch=None,
    steps=20,
    warmup=3,
    device=None,
    ncsnpp_nf=None,
    overrides=(),
):
    """One row per model and precision: plain and Lightning images/s, ratio, peak memory, what ran."""
    device = device or torch.device("cpu")
    rows = []
    for name in models:
        model_overrides, model_batch = list(overrides), batch or 64
        if name == "ncsnpp":
            model_batch = batch or (128 if device.type == "cuda" else 16)
            nf = ncsnpp_nf or (None if device.type == "cuda" else 32)
            model_overrides = ([f"model.nf={nf}"] if nf else []) + model_overrides
        for precision in precisions:
            options = variant_overrides(channels_last, compile, compile_mode)
            torch.manual_seed(0)
            plain, plain_mem, plain_seen = bench_plain(
                name, model_batch, steps, warmup, device, model_overrides + options, precision
            )
            torch.manual_seed(0)
            light, light_mem, light_seen = bench_lightning(
                name, model_batch, steps, warmup, device, model_overrides + options, precision
            )
            variant = (
                precision
                + (" +channels-last" if channels_last else "")
                + (f" +compile({compile_mode})" if compile else "")
            )
            rows.append(
                {
                    "model": name + ("".join(" " + o for o in model_overrides)),
                    "batch": model_batch,
                    "variant": variant,
                    "plain": plain,
                    "lightning": light,
                    "ratio": light / plain,
                    "plain_mb": plain_mem,
                    "lightning_mb": light_mem,
                    "plain_seen": plain_seen,
                    "lightning_seen": light_seen,
                }
            )
    return rows


def print_table(rows, device, out=None):
    print(f"\ndevice: {device} (torch threads: {torch.get_num_threads()}, torch {torch.__version__})")
    print(
        f"{'model':<22}{'batch':>6}  {'variant':<36}{'plain img/s':>12}{'lightning img/s':>16}{'ratio':>7}"
        f"{'peak MB plain':>14}{'peak MB light':>14}  ran (plain | lightning)"
    )
    for r in rows:
        print(
            f"{r['model']:<22}{r['batch']:>6}  {r['variant']:<36}{r['plain']:>12.1f}{r['lightning']:>16.1f}"
            f"{r['ratio']:>7.2f}{r['plain_mb']:>14.0f}{r['lightning_mb']:>14.0f}  "
            f"{seen_text(r['plain_seen'])} | {seen_text(r['lightning_seen'])}"
        )
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        new = not out.exists()
        with open(out, "a") as f:
            if new:
                f.write(
                    f"device: {device}, torch {torch.__version__}\n\n| model | batch | variant | plain img/s | "
                    f"lightning img/s | ratio | peak MB plain | peak MB lightning | ran (autocast/layout/compile) |\n"
                    f"|---|---|---|---|---|---|---|---|---|\n"
                )
            for r in rows:
                f.write(
                    f"| {r['model']} | {r['batch']} | {r['variant']} | {r['plain']:.1f} | {r['lightning']:.1f} | "
                    f"{r['ratio']:.2f} | {r['plain_mb']:.0f} | {r['lightning_mb']:.0f} | "
                    f"{seen_text(r['lightning_seen'])} |\n"
                )
