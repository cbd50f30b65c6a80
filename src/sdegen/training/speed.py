"""Speed options of ``sdegen train`` (train.yaml), applied to the network ``self.model`` of the
LightningModules (``ScoreModule``, ``ClassifierModule``) by the ``SpeedOptions`` mixin, the one place:

* ``channels_last: true``: the network's 4-D weights and the 4-D image batches of the steps in
  ``torch.channels_last`` memory format (NHWC; tensor-core convolutions without layout transposes).
* ``compile: true``: ``torch.compile`` of the network's forward (``nn.Module.compile``, in place, so
  the ``state_dict`` keeps its plain names: no ``_orig_mod.`` prefix in checkpoints), with
  ``compile_mode`` (default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs).  It is
  applied in ``setup("fit")``, after the EMA callback has copied the network, so the EMA copy (used for the
  sample grids) stays uncompiled and the compiled call never points at another module.
* ``trainer.precision=bf16-mixed`` is Lightning's own (autocast around the steps).

Measured in ``scripts/bench_train.py --precision 32-true bf16-mixed --channels-last --compile``.
"""

from __future__ import annotations

import os
import shutil

import torch
from omegaconf import OmegaConf

from ..errors import UserError

#: the modes of torch.compile
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


#: trainer.precision values of lightning.Trainer (plus its aliases 64, 32, 16, "bf16")
PRECISIONS = (
    "32-true",
    "bf16-mixed",
    "16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
)
PRECISION_ALIASES = ("64", "32", "16", "bf16")


def check_speed_options(cfg) -> None:
    """``channels_last``/``compile`` are booleans, ``compile_mode`` one of ``COMPILE_MODES``,
    ``trainer.precision`` one of Lightning's (``PRECISIONS``)."""
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    if precision is not None and str(precision) not in PRECISIONS + PRECISION_ALIASES:
        raise UserError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for key in ("channels_last", "compile"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not isinstance(value, bool):
            raise UserError(f"{key} must be true or false, got {value!r}")
    mode = OmegaConf.select(cfg, "compile_mode", default=None)
    if mode is not None and str(mode) not in COMPILE_MODES:
        raise UserError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")


def has_cpp_compiler() -> bool:
    """What torch.compile (inductor) needs to build CPU kernels: $CXX, g++ or clang++."""
    return bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++"))


def to_channels_last(batch):
    """``batch`` (a tensor, or a list/tuple of them) with its 4-D tensors in channels-last format."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_channels_last(b) for b in batch)
    return batch


def compile_network(model: torch.nn.Module, mode: str | None = "default", device=None) -> torch.nn.Module:
    """``model.compile(mode=...)`` in place (state_dict names unchanged); a ``UserError`` on a CPU
    without a C++ compiler (inductor builds its CPU kernels with one)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cpu" and not has_cpp_compiler():
        raise UserError(
            "compile=true on the CPU needs a C++ compiler (g++ or clang++, or $CXX); install one or set compile=false"
        )
    if getattr(model, "_compiled_call_impl", None) is None:
        model.compile(mode=str(mode or "default"))
    return model


class SpeedOptions:
    """Mixin (before ``L.LightningModule``) applying ``cfg.channels_last`` and ``cfg.compile`` to
    ``self.model``; call ``self.apply_memory_format()`` at the end of ``__init__`` and pass the steps'
    image batches through ``self.memory_format(x)``."""

    def apply_memory_format(self) -> None:
        # before the trainer's setup: the EMA callback's deep copy then has the same layout (fused EMA update)
        if self.cfg.get("channels_last", False):
            self.model.to(memory_format=torch.channels_last)

    def setup(self, stage: str) -> None:
        # after the callbacks' setup (the EMA copy): the compiled call belongs to this network alone
        if stage == "fit" and self.cfg.get("compile", False):
            compile_network(self.model, self.cfg.get("compile_mode", "default"), self.device)

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """The input batch ``x`` in the network's memory format (the steps call it on their images;
        not ``on_after_batch_transfer``, which Lightning warns about next to a LightningDataModule)."""
        return to_channels_last(x) if self.cfg.get("channels_last", False) else x
