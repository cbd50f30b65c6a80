"""Callbacks of ``sdegen train``: EMA, periodic checkpoints, sample grids, learning-rate monitor."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.callbacks.weight_averaging import EMAWeightAveraging, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..samplers import build as build_sampler


def ema_callback(trainer: L.Trainer):
    from lightning.pytorch.callbacks.weight_averaging import WeightAveraging

    return next((cb for cb in trainer.callbacks if isinstance(cb, WeightAveraging)), None)


def ema_model(trainer: L.Trainer, pl_module: L.LightningModule):
    """The EMA copy of ``pl_module.model`` (or the model itself without EMA)."""
    cb = ema_callback(trainer)
    averaged = getattr(cb, "_average_model", None) if cb is not None else None
    return averaged.module.model if averaged is not None else pl_module.model


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Images in [0, 1] (N, C, H, W) -> one PNG grid."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, int(round(images.shape[0] ** 0.5)))
    save_image(images.float().cpu(), str(path), nrow=nrow, padding=2, pad_value=1.0)
    return path


class SampleGrid(Callback):
    """Every ``every_n_steps`` optimizer steps (and at the end of training), draw ``n`` samples with
    the EMA weights and the configured sampler and write ``samples/step_XXXXXXX.png`` (also logged to
    W&B as an image).  Only on rank 0; a fixed seed makes the grids comparable across steps."""

    def __init__(
        self,
        out_dir,
        every_n_steps: int = 500,
        n: int = 64,
        sampler: dict | None = None,
        seed: int = 0,
        at_end: bool = True,
    ):
        self.out_dir, self.at_end = Path(out_dir), bool(at_end)
        self.every_n_steps, self.n, self.seed = int(every_n_steps), int(n), int(seed)
        # configs/sampler/<name>.yaml (sampler@sample_grid.sampler), built once: `auto` resolved, keys checked
        self.sampler = build_sampler(sampler) if sampler else None
        self._last_step = -1

    @torch.no_grad()
    def make_grid(self, trainer, pl_module):
        step = trainer.global_step
        if step == self._last_step or self.n <= 0 or self.sampler is None:
            return None
        self._last_step = step
        model = ema_model(trainer, pl_module)
        was_training = model.training
        model.eval()
        try:
            generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
            x_init = pl_module.sde.prior_sample(
                (self.n, *pl_module.data_info["shape"]), generator=generator, device=pl_module.device
            )
            labels = None
            num_classes = int(getattr(model, "num_classes", 0) or 0)
            if getattr(model, "class_conditional", False) and num_classes:
                # class-conditional network: one block of rows per class (n // K samples each)
                labels = torch.arange(self.n, device=pl_module.device) * num_classes // self.n

            def score_fn(x, t):
                return model(x, t) if labels is None else model(x, t, labels[: x.shape[0]])

            result = self.sampler.with_data_std(pl_module.data_info.get("data_std")).sample(
                score_fn, pl_module.sde, x_init.shape, generator=generator, device=pl_module.device, x_init=x_init
            )
        finally:
            model.train(was_training)
        x = result.x
        dm = trainer.datamodule
        images = dm.unscale(x) if dm is not None and hasattr(dm, "unscale") else x
        if not pl_module.data_info.get("is_image", True):
            images = (images - images.min()) / (images.max() - images.min() + 1e-12)
        path = save_grid(images, self.out_dir / f"step_{step:07d}.png")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image(key="samples", images=[str(path)], step=step)
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and trainer.is_global_zero:
            self.make_grid(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if self.at_end and trainer.is_global_zero:
            self.make_grid(trainer, pl_module)


class StepCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt`` plus ``checkpoints/step_XXXXXXX.ckpt`` every N steps (all kept by default).

    Lightning writes checkpoints atomically (a buffer written inside an fsspec transaction, which
    for local files is a temporary file renamed into place), so a run killed mid-write leaves the
    previous ``last.ckpt`` intact."""

    def __init__(self, dirpath, every_n_steps: int, keep: int = -1):
        super().__init__(
            dirpath=str(dirpath),
            filename="step_{step:07d}",
            auto_insert_metric_name=False,
            every_n_train_steps=int(every_n_steps),
            save_last=True,
            save_top_k=int(keep),
            monitor="step" if keep > 0 else None,
            mode="max",
            save_on_train_epoch_end=False,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # the run is ending (max_steps, max_time or a stop request): save last.ckpt now, while the raw
        # weights are still in the module (EMAWeightAveraging copies the EMA ones in at train end)
        done = trainer.should_stop or (trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)
        if done and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class HostCountedAveragedModel(AveragedModel):
    """``torch.optim.swa_utils.AveragedModel`` whose update never waits for the device.

    torch's ``update_parameters`` reads its on-device counter ``n_averaged`` on the host twice per call
    (``bool(self.n_averaged == 0)``, ``if self.n_averaged > 0``): on a GPU that is a device-to-host
    synchronisation every training step, which stops the CPU from queueing the next step while the
    GPU works.  Here a host-side mirror of the counter decides (read from the device once, and again
    after ``load_state_dict``), the averaging function gets the count as a Python int, and the device
    counter (what checkpoints store) is advanced in place.  Needs a ``multi_avg_fn``; the same
    arithmetic as torch's (first call copies, later calls average)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.multi_avg_fn is None:
            raise ValueError("HostCountedAveragedModel needs a multi_avg_fn")
        self._host_count = None

    def load_state_dict(self, *args, **kwargs):
        result = super().load_state_dict(*args, **kwargs)
        self._host_count = None  # n_averaged came from the checkpoint
        return result

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        if self._host_count is None:
            self._host_count = int(self.n_averaged)  # one read, at the first update
        if self.use_buffers:
            averaged = [*self.module.parameters(), *self.module.buffers()]
            current = [*model.parameters(), *model.buffers()]
        else:
            averaged, current = list(self.module.parameters()), list(model.parameters())
        groups: dict = {}  # (device, dtype) -> (averaged tensors, current tensors)
        for a, c in zip(averaged, current):
            pair = groups.setdefault((a.device, a.dtype), ([], []))
            pair[0].append(a.detach())
            pair[1].append(c.detach().to(a.device))
        for avg, cur in groups.values():
            if self._host_count == 0:
                torch._foreach_copy_(avg, cur)
            else:
                self.multi_avg_fn(avg, cur, self._host_count)
        if not self.use_buffers:  # as torch: buffers follow the model
            for b_avg, b_model in zip(self.module.buffers(), model.buffers()):
                b_avg.detach().copy_(b_model.detach().to(b_avg.device))
        self.n_averaged += 1
        self._host_count += 1


class FusedEMAWeightAveraging(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` with the fused (``torch._foreach``) update of
    ``get_ema_multi_avg_fn`` instead of its per-tensor Python loop (that loop cost ≈ 40% of a GPU
    step for NCSN++ in scripts/bench_train.py), on a ``HostCountedAveragedModel`` (no device-to-host
    synchronisation per update)."""

    def __init__(self, decay: float = 0.999, update_starting_at_step=None, update_every_n_steps: int = 1):
        WeightAveraging.__init__(self, multi_avg_fn=ema_multi_avg_fn(decay))
        self.decay = float(decay)
        self.update_every_n_steps, self.update_starting_at_step = int(update_every_n_steps), update_starting_at_step
        self.update_starting_at_epoch = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Lightning's ``WeightAveraging.setup`` (ScoreModule has no ``configure_model``), building a
        ``HostCountedAveragedModel``."""
        if stage == "fit":
            self._average_model = HostCountedAveragedModel(
                model=pl_module, device=self._device or pl_module.device, use_buffers=self._use_buffers, **self._kwargs
            )


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent γ of the power-function EMA whose averaging profile has relative width
    σ_rel = √((γ+1)/((γ+2)²(γ+3))) (Karras et al. 2024, EDM2, Eq. 3); e.g. 0.05 → 16.97, 0.10 → 6.94."""
    if not 0 < sigma_rel < 12**-0.5:
        raise ValueError(f"ema.sigma_rel must lie in (0, {12**-0.5:.3f}), got {sigma_rel}")
    width = lambda g: ((g + 1) / ((g + 2) ** 2 * (g + 3))) ** 0.5  # noqa: E731 - decreasing in γ ≥ 0
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if width(mid) > sigma_rel else (lo, mid)
    return (lo + hi) / 2


def power_ema_multi_avg_fn(gamma: float):
    """EDM2's power-function EMA (Karras et al. 2024, Eq. 2): at the t-th averaged model (t = 1, 2, ...)
    β_t = (1 − 1/t)^(γ+1), so the average weighs the model of step τ by ≈ τ^γ: its length grows with
    the run (a fixed fraction σ_rel of it) instead of a fixed half-life.  γ = 0 is the plain running mean."""

    @torch.no_grad()
    def update(ema_params, current_params, n_averaged):
        # AveragedModel copies the first model and then calls with n = 1, 2, ...  (HostCountedAveragedModel
        # passes a Python int: no device read here)
        if not (ema_params[0].is_floating_point() or ema_params[0].is_complex()):
            torch._foreach_copy_(ema_params, current_params)  # integer buffers (BatchNorm's counter) follow the model
            return
        t = int(n_averaged) + 1
        beta = (1.0 - 1.0 / t) ** (gamma + 1.0)
        torch._foreach_lerp_(ema_params, current_params, 1.0 - beta)

    return update


class PowerEMAWeightAveraging(FusedEMAWeightAveraging):
    """``EMAWeightAveraging`` with the power-function profile of ``power_ema_multi_avg_fn``."""

    def __init__(self, sigma_rel: float = 0.1, update_starting_at_step=None, update_every_n_steps: int = 1):
        WeightAveraging.__init__(self, multi_avg_fn=ema_multi_avg_fn(None, sigma_rel))
        self.sigma_rel, self.decay = float(sigma_rel), None
        self.update_every_n_steps, self.update_starting_at_step = int(update_every_n_steps), update_starting_at_step
        self.update_starting_at_epoch = None


def ema_multi_avg_fn(decay: float | None, sigma_rel: float | None = None):
    """The averaging function of train.yaml's ``ema``: EDM2's power function when ``sigma_rel`` is set,
    else the fixed ``decay`` (what the callbacks below and the plain loop of scripts/bench_train.py use)."""
    if sigma_rel:
        return power_ema_multi_avg_fn(sigma_rel_to_gamma(float(sigma_rel)))
    return get_ema_multi_avg_fn(decay)


def ema_weight_averaging(decay: float | None, start_step=None, every_n_steps: int = 1, sigma_rel: float | None = None):
    if sigma_rel:
        return PowerEMAWeightAveraging(float(sigma_rel), start_step, every_n_steps)
    return FusedEMAWeightAveraging(decay, start_step, every_n_steps)


def build_callbacks(cfg, run_dir: Path) -> list:
    callbacks: list = []
    ema = cfg.get("ema") or {}
    if ema.get("decay") or ema.get("sigma_rel"):
        callbacks.append(
            ema_weight_averaging(
                float(ema.get("decay") or 0),
                ema.get("start_step"),
                int(ema.get("every_n_steps", 1)),
                ema.get("sigma_rel"),
            )
        )
    sample_cfg = cfg.get("sample_grid") or {}
    if int(sample_cfg.get("every_n_steps", 0) or 0) > 0 or sample_cfg.get("at_end", True):
        from omegaconf import OmegaConf

        sampler = OmegaConf.to_container(sample_cfg.sampler, resolve=True)
        callbacks.append(
            SampleGrid(
                run_dir / "samples",
                every_n_steps=int(sample_cfg.get("every_n_steps", 0) or 0),
                n=int(sample_cfg.n_samples),
                sampler=sampler,
                seed=int(sample_cfg.get("seed", 0)),
                at_end=bool(sample_cfg.get("at_end", True)),
            )
        )
    ck = cfg.get("checkpoint") or {}
    callbacks.append(
        StepCheckpoint(
            run_dir / "checkpoints", every_n_steps=int(ck.get("every_n_steps", 500)), keep=int(ck.get("keep", -1))
        )
    )
    return callbacks


__all__ = ["SampleGrid", "StepCheckpoint", "build_callbacks", "ema_model", "save_grid", "rank_zero_only"]
