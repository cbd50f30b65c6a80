"""``sdegen train``: build data, SDE, LightningModule, loggers and callbacks from the config and fit.

Run folder (the Hydra output dir): ``config.yaml`` (resolved), ``checkpoints/{last,step_*}.ckpt``
(atomic writes), ``csv/metrics.csv``, ``samples/step_*.png``, ``wandb/``.

``resume=RUN_OR_CKPT`` continues a run at its saved global step (weights, optimiser, LR schedule,
EMA, RNG state) with the config stored in its checkpoint (a named file, or the run's newest loadable
one), writing into the new run folder (or into that run's own folder when ``hydra.run.dir`` names it);
keys given on the command line override it, except ``sde``/``schedule``/``model``/``data`` choices that
contradict it, which are refused.  The stored config is data: every ``_target_`` in it must be one of
``runtime.registry``'s.  SIGINT/SIGTERM stop after the current step with a final checkpoint and print
how to resume.

A run folder belongs to one run: the command holds its lock (``runtime.rundir.claim``) while it runs, and
a folder that already holds a run is refused unless ``resume=`` names it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf, open_dict

from ..errors import UserError
from ..runtime import registry
from ..runtime.checkpoints import AtomicCheckpointIO, find_checkpoint
from ..runtime.config import build_sde, check_config, to_plain
from ..runtime.device import check_accelerator
from ..runtime.loggers import build_loggers, finish_wandb
from ..runtime.rundir import claim
from ..runtime.rundir import run_dir as current_run_dir
from ..runtime.setup import build_data, check_model_args, cli_overrides, refuse_conflicts
from ..training.callbacks import build_callbacks
from ..training.classifier import ClassifierModule
from ..training.module import ScoreModule
from ..training.progress import RunProgressBar, StopOnSignal

log = logging.getLogger("sdegen")

#: the LightningModule of each training task
MODULES = {"generate": ScoreModule, "classifier": ClassifierModule}


def resumed_config(cfg, stored: dict, source):
    """The checkpoint's config with the keys given on the command line on top (contradicting
    ``sde``/``schedule``/``model``/``data`` choices are a ``UserError``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return cfg  # called from Python: the caller composed the config it wants
    refuse_conflicts(cfg, stored, source)
    # the current defaults under the stored run (keys the stored run lacks get their defaults)
    stored = OmegaConf.create({k: v for k, v in stored.items() if k not in ("data_info", "resumed_from")})
    merged = OmegaConf.merge(OmegaConf.create(OmegaConf.to_container(cfg, resolve=False)), stored)
    for key in ("sde", "schedule", "model", "data", "task", "loss", "logger", "sample_grid.sampler"):  # whole choices
        if OmegaConf.select(stored, key, default=None) is not None:
            OmegaConf.update(merged, key, OmegaConf.select(stored, key), merge=False)
    given = {key.split("@", 1)[-1] for key in cli_overrides() if not key.startswith("hydra")}
    with open_dict(merged):
        for key in sorted(given):
            if key.split(".", 1)[0] in ("debug", "experiment", "resume"):
                continue  # global groups: the stored run already carries what they set
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False, force_add=True)
        merged.resume = cfg.resume
    return merged


def trainer_kwargs(cfg) -> dict:
    kwargs = dict(OmegaConf.to_container(cfg.trainer, resolve=True)) if "trainer" in cfg else {}
    import inspect

    valid = inspect.signature(L.Trainer.__init__).parameters
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise UserError(f"trainer.{unknown[0]} is not an argument of lightning.Trainer (check the spelling)")
    return kwargs


def main(cfg, run_dir=None):
    """Train; returns a summary dict (run folder, last checkpoint, steps, seconds, last losses)."""
    run_dir = Path(run_dir) if run_dir is not None else current_run_dir(cfg)
    with claim(run_dir, "train", resume=cfg.get("resume")):
        return _train(cfg, run_dir)


def _resume(cfg):
    """``(config, checkpoint file, its global step)`` of ``resume=``: the stored config (checked against the
    registry on read) with the command line on top; the run must have steps left to train."""
    ckpt_path, checkpoint = find_checkpoint(cfg.resume, kind=None)
    cfg = resumed_config(cfg, checkpoint["sdegen"]["cfg"], ckpt_path)
    check_config(cfg, "train")
    step = int(checkpoint.get("global_step") or 0)
    max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1)
    if max_steps is not None and int(max_steps) != -1 and int(max_steps) <= step:
        raise UserError(
            f"trainer.max_steps={max_steps} leaves nothing to train: {ckpt_path} is at step {step}; "
            f"give trainer.max_steps > {step} to continue"
        )
    return cfg, ckpt_path, step


def nonfinite_message(err: FloatingPointError, run_dir: Path) -> str:
    """The one line of a NaN/inf loss: where it happened, the checkpoint to go back to (if one was written)
    and what to check."""
    what = str(err).removeprefix("sdegen: ").split(";", 1)[0].strip()
    try:
        file, checkpoint = find_checkpoint(run_dir)
        back = f"the newest checkpoint before it is {file} (step {checkpoint.get('global_step')})"
    except UserError:
        back = "no checkpoint was written"
    return f"{what}; {back}; lower optim.lr, or check the loss and model settings (loss.*, model.data_std) and the data"


def _train(cfg, run_dir: Path):
    if cfg.get("threads"):  # intra-op threads: 1 keeps a shared CPU from thrashing (scripts/bench_train.py --threads)
        torch.set_num_threads(int(cfg.threads))
    ckpt_path, start_step = None, 0
    if cfg.get("resume"):
        cfg, ckpt_path, start_step = _resume(cfg)
    registry.check(cfg)  # every object of the run (model, data, sde, loggers, samplers) is one of sdegen's
    task = str(cfg.task.get("name", "generate"))
    if task not in MODULES:
        raise UserError(f"task={task} is not a task of `sdegen train`; its tasks: {', '.join(MODULES)}")
    check_accelerator(cfg.trainer.get("accelerator"))
    if task == "generate":
        check_model_args(cfg.get("model"))
    kwargs = trainer_kwargs(cfg)
    progress = bool(cfg.trainer.get("enable_progress_bar", True))
    L.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)

    data = build_data(cfg.data)
    data.prepare_data()
    data.setup("fit")  # read (and check) the data before the run folder gets any file
    sde = build_sde(cfg)
    module = MODULES[task](cfg, sde, data)

    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(to_plain(cfg)), run_dir / "config.yaml")
    loggers = build_loggers(cfg, run_dir)
    stopper = StopOnSignal()
    callbacks = [*build_callbacks(cfg, run_dir), stopper] + ([RunProgressBar()] if progress else [])
    kwargs["enable_progress_bar"] = progress
    trainer = L.Trainer(
        **kwargs,
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    start = time.time()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    except FloatingPointError as err:
        if not str(err).startswith("sdegen: "):
            raise
        raise UserError(nonfinite_message(err, run_dir)) from None
    finally:
        finish_wandb(loggers)
    seconds = time.time() - start
    last = run_dir / "checkpoints" / "last.ckpt"
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    trained = int(trainer.global_step) - start_step
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": str(last),
        "global_step": int(trainer.global_step),
        "steps_trained": trained,
        "resumed_from": str(ckpt_path) if ckpt_path else None,
        "seconds": round(seconds, 1),
        **metrics,
    }
    if not trainer.is_global_zero:
        return summary
    if not last.is_file():
        raise UserError(
            f"training ended at step {trainer.global_step} without a checkpoint (no step was trained: "
            f"check trainer.max_steps / trainer.max_time)"
        )
    losses = "".join(
        f" {k}={metrics[k]:.4f}" for k in ("train/loss", "val/loss", "train/acc", "val/acc") if k in metrics
    )
    at = f" (steps {start_step}-{trainer.global_step} of {ckpt_path})" if ckpt_path else ""
    log.info(f"trained {trained} steps{at} in {seconds / 60:.1f} min;{losses}; checkpoint: {last}")
    if stopper.signal_received:
        log.info(
            f"stopped by {stopper.signal_received} at step {trainer.global_step}; "
            f"resume with: sdegen train resume={run_dir}"
        )
        raise SystemExit(130 if stopper.signal_received == "SIGINT" else 143)
    # steps and wall time of this invocation, for `sdegen report` (its "Steps" and "Train (min)" columns)
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
