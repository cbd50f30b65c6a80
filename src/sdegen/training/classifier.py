"""The time-dependent classifier p_φ(y | x_t, t) for classifier guidance (``task=classifier``).

Training (``sdegen train task=classifier sde=vp schedule=linear data=mnist_embedded``): cross-entropy
on x_t = α(t) x_0 + σ(t) ε drawn from the chosen SDE's marginal at t ~ U(t_min, T) (Song et al.
2021, App. I.1; thesis Sec. 4.1.2).  The network is a ``TimeDependentWideResNet`` configured by
``task.model``; its optimiser by ``task.optim``.  Checkpoints are Lightning checkpoints whose
``sdegen`` entry holds the plain config and data info (``kind: classifier``), so
``load_classifier(path)`` works with ``torch.load(weights_only=True)`` and without the data.

Evaluation (``sdegen eval task=classifier ckpt=PATH``): accuracy on the test split at a grid of
noise levels, averaged (the thesis's Table 4.2 metric) and as a curve (``classifier_accuracy.json``
and ``.png`` in the run folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ..models.wideresnet import TimeDependentWideResNet


def _plain(node) -> dict:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node or {})


def build_classifier(model_cfg, sde, data_shape, num_classes) -> TimeDependentWideResNet:
    """The WRN from ``task.model`` (``time_input: auto`` = log σ for VE, t otherwise)."""
    kwargs = _plain(model_cfg)
    kwargs.pop("_target_", None)
    if kwargs.get("time_input", "auto") == "auto":
        kwargs["time_input"] = "log_sigma" if getattr(sde, "name", "") == "ve" else "t"
    if not num_classes:
        raise ValueError("task=classifier needs labelled data (data.num_classes > 0)")
    return TimeDependentWideResNet(in_channels=int(data_shape[0]), num_classes=int(num_classes), sde=sde, **kwargs)


def noisy_batch(sde, x0, *, t_min, generator=None):
    """(x_t, t) with t ~ U(t_min, T) and x_t ~ p_0t(x_t | x_0)."""
    u = torch.rand(x0.shape[0], generator=generator, device=generator.device if generator is not None else None)
    t = (u.to(x0.device) * (sde.T - t_min) + t_min).to(x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator is not None else None)
    return sde.perturb(x0, t, noise.to(x0.device, x0.dtype)), t


class ClassifierModule(L.LightningModule):
    """Cross-entropy of ``TimeDependentWideResNet`` on noisy data ``x_t`` at random t."""

    def __init__(self, cfg, sde, data):
        super().__init__()
        from .module import data_info, plain_config

        self.cfg, self.sde = cfg, sde
        task = cfg.task
        self.data_info = data_info(data)
        self.model = build_classifier(task.get("model") or {}, sde, data.shape, data.num_classes)
        t_min = task.get("t_min")
        self.t_min = float(sde.eps if t_min is None else t_min)
        self._plain_config = plain_config

    def forward(self, x, t):
        return self.model(x, t)

    def _step(self, batch, generator=None):
        x, y = batch[0], batch[1]
        x_t, t = noisy_batch(self.sde, x, t_min=self.t_min, generator=generator)
        logits = self.model(x_t, t)
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(1) == y).float().mean()
        return loss, accuracy

    def training_step(self, batch, batch_idx):
        loss, accuracy = self._step(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"sdegen: classifier training stopped: loss {loss.item()} at step {self.global_step}; "
                                     f"lower task.optim.lr")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch[0].shape[0])
        self.log("train/acc", accuracy, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        generator = torch.Generator(device=batch[0].device).manual_seed(int(batch_idx))  # same t, noise each time
        loss, accuracy = self._step(batch, generator)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)
        self.log("val/acc", accuracy, prog_bar=True, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)

    def configure_optimizers(self):
        optim = _plain(self.cfg.task.get("optim") or {})
        lr, warmup = float(optim.get("lr", 2e-3)), int(optim.get("warmup", 0))
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=float(optim.get("weight_decay", 0.0)))
        if warmup <= 0:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_callbacks(self):
        """A classifier has no samples to draw: replace the trainer's sample-grid callback by an idle one."""
        from .callbacks import SampleGrid

        return [SampleGrid(".", every_n_steps=0, n=0, at_end=False)]

    def on_save_checkpoint(self, checkpoint):
        checkpoint["sdegen"] = {"cfg": self._plain_config(self.cfg), "data": dict(self.data_info), "kind": "classifier"}


def load_classifier(path, map_location="cpu"):
    """``(model, cfg)``: the classifier (eval mode, EMA weights when trained with EMA) and the run's
    config as plain data (with ``cfg["data_info"]``).  ``model(x, t) -> logits``."""
    from ..config import build_sde
    from .checkpoint import load_checkpoint, model_state

    checkpoint = load_checkpoint(path, map_location)
    info = checkpoint.get("sdegen")
    if info is None or info.get("kind") != "classifier":
        raise ValueError(f"sdegen: {path} is not a classifier checkpoint (train one with `sdegen train task=classifier`)")
    cfg = dict(info["cfg"])
    cfg["data_info"] = dict(info["data"])
    sde = build_sde(OmegaConf.create({k: cfg[k] for k in ("sde", "schedule") if k in cfg}))
    model = build_classifier(cfg["task"].get("model") or {}, sde, cfg["data_info"]["shape"], cfg["data_info"]["num_classes"])
    model.load_state_dict(model_state(checkpoint))
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval(), cfg


@torch.no_grad()
def accuracy_curve(model, sde, images, labels, times, *, batch_size=500, seed=0, device="cpu"):
    """Accuracy of ``model`` on x_t ~ p_0t(· | x_0) for each t in ``times`` (fixed noise per t)."""
    model = model.to(device).eval()
    accuracies = []
    for i, t in enumerate(times):
        generator = torch.Generator().manual_seed(seed + i)
        correct = 0
        for start in range(0, images.shape[0], batch_size):
            x0 = images[start:start + batch_size]
            noise = torch.randn(x0.shape, generator=generator)
            tt = torch.full((x0.shape[0],), float(t))
            x_t = sde.perturb(x0, tt, noise).float().to(device)
            logits = model(x_t, tt.to(device))
            correct += int((logits.argmax(1).cpu() == labels[start:start + batch_size]).sum())
        accuracies.append(correct / images.shape[0])
    return accuracies


def evaluate(cfg, run_dir=None):
    """``sdegen eval task=classifier ckpt=PATH``: test accuracy over a grid of noise levels."""
    import hydra.utils

    if not cfg.get("ckpt"):
        raise SystemExit("sdegen: error: `sdegen eval task=classifier` needs ckpt=PATH (a `sdegen train task=classifier` checkpoint)")
    device = str(cfg.get("device", "auto"))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model, plain = load_classifier(cfg.ckpt, map_location=device)
    from ..config import build_sde

    stored = OmegaConf.create(plain)
    sde = build_sde(stored)
    data = hydra.utils.instantiate(stored.data)
    ev = _plain(cfg.task.get("eval") or {})
    n = int(ev.get("n", 2000))
    split = ev.get("split", "test")
    x, y = data.reference(min(n, _split_size(data, split, n)), split=split, generator=torch.Generator().manual_seed(0))
    t_min = plain["task"].get("t_min")
    t_min = float(sde.eps if t_min is None else t_min)
    times = np.linspace(t_min, sde.T, int(ev.get("n_times", 11))).tolist()
    accuracies = accuracy_curve(model, sde, x.float(), torch.as_tensor(y).long(), times,
                                batch_size=int(ev.get("batch_size", 500)), device=device)
    log_snr = [float(sde.log_snr(torch.tensor(t, dtype=torch.float64))) for t in times]
    result = {"mean_accuracy": float(np.mean(accuracies)), "times": times, "accuracy": accuracies, "log_snr": log_snr,
              "n": int(x.shape[0]), "split": split, "sde": plain["sde"].get("_target_"), "ckpt": str(cfg.ckpt)}
    out = Path(run_dir) if run_dir is not None else _run_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "classifier_accuracy.json").write_text(json.dumps(result, indent=2))
    _plot_curve(result, out / "classifier_accuracy.png")
    print(f"[sdegen] classifier accuracy (mean over {len(times)} noise levels): {result['mean_accuracy']:.3f}; "
          + ", ".join(f"t={t:.2f}: {a:.3f}" for t, a in zip(times, accuracies)) + f" -> {out}", flush=True)
    return result


def _split_size(data, split, default):
    try:
        return int(data.split(split)[0].shape[0])  # image data modules
    except Exception:  # noqa: BLE001 - data=gmm draws fresh samples
        return default


def _run_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001
        return Path("outputs/eval")


def _plot_curve(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(result["times"], result["accuracy"], "o-")
    ax.set_xlabel("t")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"time-dependent classifier (mean {result['mean_accuracy']:.3f})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["ClassifierModule", "load_classifier", "evaluate", "accuracy_curve", "build_classifier"]
