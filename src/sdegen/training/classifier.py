"""The time-dependent classifier p_φ(y | x_t, t) for classifier guidance (``task=classifier``).

Training (``sdegen train task=classifier sde=vp schedule=linear data=mnist_embedded``): cross-entropy
on x_t = α(t) x_0 + σ(t) ε drawn from the chosen SDE's marginal at t ~ U(t_min, T) (Song et al.
2021, App. I.1; thesis Sec. 4.1.2).  The network is a ``TimeDependentWideResNet`` configured by
``task.model``; its optimiser by ``task.optim``.  Checkpoints are Lightning checkpoints whose
``sdegen`` entry holds the plain config and data info (``kind: classifier``), so
``load_classifier(path)`` works with ``torch.load(weights_only=True)`` and without the data.

Evaluation (``sdegen eval task=classifier ckpt=PATH``, ``commands/eval.py``): ``accuracy_curve`` on
the test split at a grid of noise levels (the thesis's Table 4.2 metric).  Loading:
``runtime.checkpoints.load_classifier``.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models.wideresnet import TimeDependentWideResNet
from .module import LossWatch, data_info, plain_config
from .speed import SpeedOptions


def build_classifier(model_cfg, sde, data_shape, num_classes) -> TimeDependentWideResNet:
    """The WRN from ``task.model`` (``time_input: auto`` = log σ for VE, t otherwise)."""
    kwargs = plain_config(model_cfg or {})
    kwargs.pop("_target_", None)
    if kwargs.get("time_input", "auto") == "auto":
        kwargs["time_input"] = "log_sigma" if getattr(sde, "name", "") == "ve" else "t"
    if not num_classes:
        raise UserError("task=classifier needs labelled data (data with classes, e.g. data=mnist_embedded)")
    return TimeDependentWideResNet(in_channels=int(data_shape[0]), num_classes=int(num_classes), sde=sde, **kwargs)


def noisy_batch(sde, x0, *, t_min, generator=None):
    """(x_t, t) with t ~ U(t_min, T) and x_t ~ p_0t(x_t | x_0)."""
    u = torch.rand(x0.shape[0], generator=generator, device=generator.device if generator is not None else None)
    t = (u.to(x0.device) * (sde.T - t_min) + t_min).to(x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator is not None else None)
    return sde.perturb(x0, t, noise.to(x0.device, x0.dtype)), t


class ClassifierModule(LossWatch, SpeedOptions, L.LightningModule):
    """Cross-entropy of ``TimeDependentWideResNet`` on noisy data ``x_t`` at random t."""

    def __init__(self, cfg, sde, data):
        super().__init__()
        self.cfg, self.sde = cfg, sde
        task = cfg.task
        self.data_info = data_info(data)
        self.model = build_classifier(task.get("model") or {}, sde, data.shape, data.num_classes)
        t_min = task.get("t_min")
        self.t_min = float(sde.eps if t_min is None else t_min)
        self.apply_memory_format()

    def forward(self, x, t):
        return self.model(x, t)

    def _step(self, batch, generator=None):
        x, y = self.memory_format(batch[0]), batch[1]
        x_t, t = noisy_batch(self.sde, x, t_min=self.t_min, generator=generator)
        logits = self.model(x_t, t)
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(1) == y).float().mean()
        return loss, accuracy

    def training_step(self, batch, batch_idx):
        loss, accuracy = self._step(batch)
        self.watch_loss(loss, batch_idx)  # no host read per step (LossWatch); the progress bar shows both
        self.log("train/loss", loss, prog_bar=False, on_step=True, on_epoch=False, batch_size=batch[0].shape[0])
        self.log("train/acc", accuracy, prog_bar=False, on_step=True, on_epoch=False, batch_size=batch[0].shape[0])
        return loss

    def nonfinite_message(self, value, step, epoch, batch_idx) -> str:
        return f"sdegen: classifier training stopped: loss {value} at step {step}; lower task.optim.lr"

    def validation_step(self, batch, batch_idx):
        generator = torch.Generator(device=batch[0].device).manual_seed(int(batch_idx))  # same t, noise each time
        loss, accuracy = self._step(batch, generator)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)
        self.log("val/acc", accuracy, prog_bar=True, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)

    def configure_optimizers(self):
        optim = plain_config(self.cfg.task.get("optim") or {})
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
        self.check_loss()  # never write weights trained on a NaN/inf loss
        checkpoint["sdegen"] = {"cfg": plain_config(self.cfg), "data": dict(self.data_info), "kind": "classifier"}


@torch.no_grad()
def accuracy_curve(model, sde, images, labels, times, *, batch_size=500, seed=0, device="cpu"):
    """Accuracy of ``model`` on x_t ~ p_0t(· | x_0) for each t in ``times`` (fixed noise per t)."""
    model = model.to(device).eval()
    accuracies = []
    for i, t in enumerate(times):
        generator = torch.Generator().manual_seed(seed + i)
        correct = 0
        for start in range(0, images.shape[0], batch_size):
            x0 = images[start : start + batch_size]
            noise = torch.randn(x0.shape, generator=generator)
            tt = torch.full((x0.shape[0],), float(t))
            x_t = sde.perturb(x0, tt, noise).float().to(device)
            logits = model(x_t, tt.to(device))
            correct += int((logits.argmax(1).cpu() == labels[start : start + batch_size]).sum())
        accuracies.append(correct / images.shape[0])
    return accuracies


__all__ = ["ClassifierModule", "accuracy_curve", "build_classifier", "noisy_batch"]
