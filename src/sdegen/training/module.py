"""``ScoreModule``: denoising score matching as a LightningModule (task=generate).

Adam with linear warm-up, gradient clipping (``trainer.gradient_clip_val``), EMA of the weights
(Lightning's ``EMAWeightAveraging`` callback, built in ``run.py``; its weights are swapped in for
validation and sample grids and stored as the checkpoint's ``state_dict``), and a hard stop on a
non-finite loss.  The resolved config, the data shape and the RNG states travel inside every
checkpoint as plain data (``checkpoint["sdegen"]``), so ``load_score_model`` needs nothing else and
``torch.load(..., weights_only=True)`` works.
"""

from __future__ import annotations

import functools
import math
import random

import hydra.utils
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from .losses import build_loss, loss_config
from .speed import SpeedOptions


def plain_config(cfg) -> dict:
    """The config as plain data, resolved where possible (``${hydra:...}`` needs a Hydra run)."""
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - interpolations that only resolve inside a Hydra run
        return OmegaConf.to_container(cfg, resolve=False)


def data_info(data, with_std: bool = False) -> dict:
    """What a checkpoint records of its data: shape, classes, kind, scaling and, ``with_std``, the data's
    root-mean-square per-dimension std in model space (the samplers' focus grid follows it)."""
    info = {
        "shape": [int(s) for s in data.shape],
        "num_classes": int(getattr(data, "num_classes", 0) or 0),
        "is_image": bool(getattr(data, "is_image", False)),
        "scaling": getattr(data, "scaling", None),
    }
    if with_std and hasattr(data, "data_std"):
        info["data_std"] = float(data.data_std())
    return info


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_multiplier(step, *, warmup=0, decay="none", decay_start=0.5, total=0):
    """Learning-rate factor at optimizer step ``step``: a linear warm-up over ``warmup`` steps, then
    constant, then (``decay`` = ``linear`` | ``cosine``) a decay to zero between ``decay_start`` × ``total``
    and ``total`` steps (``total`` = trainer.max_steps).  The decay anneals the weights the EMA averages."""
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if decay == "none" or total <= 0:
        return factor
    begin = decay_start * total
    if step <= begin:
        return factor
    progress = min(1.0, (step - begin) / max(total - begin, 1.0))
    if decay == "linear":
        return factor * (1.0 - progress)
    if decay == "cosine":
        return factor * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"optim.decay must be none, linear or cosine, got {decay!r}")


def _logging_step(trainer) -> bool:
    """Whether Lightning sends this step's metrics to the loggers (every ``log_every_n_steps``)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True)) if trainer is not None else True


class LossWatch:
    """A non-finite loss stops the run without the host reading the loss every step (a GPU sync).

    ``watch_loss`` records on the device where the loss first became NaN/inf; the host looks on the
    steps whose metrics Lightning logs (every ``trainer.log_every_n_steps``: the loss is read then
    anyway), before every checkpoint (``on_save_checkpoint`` must call ``check_loss``: no checkpoint
    holds weights trained on it) and at the end.  The error names the exact step."""

    def nonfinite_message(self, value, step, epoch, batch_idx) -> str:
        return (
            f"sdegen: training stopped: the loss is {value} at step {step} (epoch {epoch}, batch {batch_idx}); "
            f"check optim.lr, the loss and model settings and the data"
        )

    def watch_loss(self, loss, batch_idx):
        window = getattr(self, "_loss_window", None)
        if window is None:  # device scalars, made once per window
            window = self._loss_window = {
                "steps": [],
                "calls": torch.zeros((), dtype=torch.long, device=loss.device),
                "first_bad": torch.full((), -1, dtype=torch.long, device=loss.device),
                "value": torch.zeros((), dtype=loss.dtype, device=loss.device),
            }
        window["steps"].append((self.global_step, self.current_epoch, batch_idx))
        bad = ~torch.isfinite(loss.detach()) & (window["first_bad"] < 0)
        window["first_bad"] = torch.where(bad, window["calls"], window["first_bad"])
        window["value"] = torch.where(bad, loss.detach(), window["value"])
        window["calls"] += 1
        if _logging_step(self.trainer) or len(window["steps"]) >= 1000:
            self.check_loss()

    def check_loss(self):
        """Raise if a loss of the current window was NaN/inf (one host read)."""
        window = getattr(self, "_loss_window", None)
        if not window or not window["steps"]:
            return
        first_bad, value = int(window["first_bad"]), float(window["value"])
        self._loss_window = None
        if first_bad >= 0:
            raise FloatingPointError(self.nonfinite_message(value, *window["steps"][first_bad]))

    def on_train_end(self):
        self.check_loss()


class ScoreModule(LossWatch, SpeedOptions, L.LightningModule):
    """Trains ``model`` (built by ``instantiate(cfg.model, sde=sde, data=data)``) with the ``loss`` group's loss
    (``channels_last``/``compile`` options: ``SpeedOptions``)."""

    def __init__(self, cfg: DictConfig, sde, data):
        super().__init__()
        self.cfg = cfg
        self.sde = sde
        self.model = hydra.utils.instantiate(cfg.model, sde=sde, data=data, _convert_="all")
        if isinstance(cfg, DictConfig) and cfg.get("loss") is not None:
            # the group's keys (a stored config's loss.weighting read as loss.name), kept for the checkpoints
            with open_dict(cfg):
                cfg.loss = loss_config(OmegaConf.to_container(cfg.loss, resolve=True))
        self.loss_fn = build_loss(sde, cfg.get("loss"))
        self.data_info = data_info(data, with_std=True)
        self.conditional = getattr(self.model, "class_conditional", False)
        self.apply_memory_format()

    def forward(self, x, t, y=None):
        return self.model(x, t, y)

    # --- steps ------------------------------------------------------------------------------
    def _batch(self, batch):
        x, y = (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)
        return self.memory_format(x), (y if self.conditional else None)

    def training_step(self, batch, batch_idx):
        x, y = self._batch(batch)
        loss, _, _ = self.loss_fn(self.model, x, y)
        self.watch_loss(loss, batch_idx)
        # no host read of the loss here: the progress bar shows it when it refreshes (training/progress.py)
        self.log("train/loss", loss, prog_bar=False, on_step=True, on_epoch=False, batch_size=x.shape[0])
        if _logging_step(self.trainer):  # a Python float logged each step would be copied to the device each step
            self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = self._batch(batch)
        generator = torch.Generator().manual_seed(int(batch_idx))  # same t and noise at every validation
        loss, _, _ = self.loss_fn(self.model, x, y, generator=generator)
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        optim = dict(self.cfg.get("optim") or {})
        lr, warmup = float(optim.get("lr", 2e-4)), int(optim.get("warmup", 0))
        opt = torch.optim.Adam(
            self.parameters(),
            lr=lr,
            betas=tuple(optim.get("betas", (0.9, 0.999))),
            eps=float(optim.get("eps", 1e-8)),
            weight_decay=float(optim.get("weight_decay", 0.0)),
        )
        decay = str(optim.get("decay") or "none")
        total = int(self.trainer.max_steps) if self.trainer is not None and self.trainer.max_steps > 0 else 0
        if warmup <= 0 and (decay == "none" or total <= 0):
            return opt
        schedule = functools.partial(
            lr_multiplier, warmup=warmup, decay=decay, decay_start=float(optim.get("decay_start", 0.5)), total=total
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- checkpoints: plain-data config and RNG state ----------------------------------------
    def on_save_checkpoint(self, checkpoint):
        self.check_loss()  # never write weights trained on a NaN/inf loss
        checkpoint["sdegen"] = {
            "cfg": plain_config(self.cfg),
            "data": dict(self.data_info),
            "rng": rng_state(),
            "kind": "score",
        }

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("sdegen", {}).get("rng")
        if state is not None:
            set_rng_state(state)
