"""``sdegen train``: build data, SDE, LightningModule, loggers and callbacks from the config and fit.

Run folder (the Hydra output dir): ``config.yaml`` (resolved), ``checkpoints/{last,step_*}.ckpt``,
``csv/metrics.csv``, ``samples/step_*.png``, ``wandb/``.  ``resume=PATH_OR_RUN_DIR`` continues a run
at its saved global step (weights, optimiser, LR schedule, EMA, RNG state) and writes into the new
run folder.  The module class is ``cfg.task.module`` (a dotted path) built as ``Module(cfg, sde, data)``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import hydra.utils
import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from ..config import build_sde
from .callbacks import build_callbacks
from .checkpoint import find_checkpoint
from .loggers import build_loggers


def resolve_class(path: str):
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"sdegen: error: cannot import task.module={path!r}: {err}") from None


def current_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def trainer_kwargs(cfg: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    return dict(kwargs)


def finish_wandb(loggers) -> None:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and rank_zero_only.rank == 0 and logger._experiment is not None:
            logger.experiment.finish()


def main(cfg: DictConfig, run_dir=None):
    """Train; returns a summary dict (run folder, last checkpoint, steps, seconds, last losses)."""
    run_dir = Path(run_dir) if run_dir is not None else current_run_dir()
    if cfg.get("threads"):  # intra-op threads: 1 keeps a shared CPU from thrashing (scripts/bench_train.py --threads)
        import torch

        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)

    ckpt_path = None
    if cfg.get("resume"):
        ckpt_path = find_checkpoint(cfg.resume)
        with open_dict(cfg):
            cfg.resumed_from = str(ckpt_path)

    data = hydra.utils.instantiate(cfg.data, _convert_="all")
    sde = build_sde(cfg)
    module = resolve_class(cfg.task.module)(cfg, sde, data)

    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        except Exception:  # noqa: BLE001 - ${hydra:...} outside a Hydra run
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=False)

    loggers = build_loggers(cfg, run_dir)
    trainer = L.Trainer(**trainer_kwargs(cfg), logger=loggers or False,
                        callbacks=build_callbacks(cfg, run_dir), default_root_dir=str(run_dir))
    start = time.time()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    finally:
        finish_wandb(loggers)  # each job of a multirun gets its own W&B run, flushed to disk
    seconds = time.time() - start
    last = run_dir / "checkpoints" / "last.ckpt"
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    summary = {"run_dir": str(run_dir), "checkpoint": str(last), "global_step": int(trainer.global_step),
               "seconds": round(seconds, 1), **metrics}
    if trainer.is_global_zero:
        print(f"[sdegen] trained {summary['global_step']} steps in {seconds / 60:.1f} min; "
              f"train/loss={metrics.get('train/loss', float('nan')):.4f} "
              f"val/loss={metrics.get('val/loss', float('nan')):.4f}; checkpoint: {last}", flush=True)
    return summary
