"""The device a command runs on: ``device=auto|cpu|cuda|cuda:1|...``."""

from __future__ import annotations

import torch

from ..errors import UserError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu; a CUDA device that is not there is a ``UserError``."""
    name = str(name or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available on this machine (use device=cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_accelerator(accelerator: str | None) -> None:
    """``trainer.accelerator=gpu|cuda`` on a machine without CUDA is a ``UserError`` (before any work)."""
    if str(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} (trainer=gpu) but CUDA is not available on this machine; "
            f"use trainer=cpu or trainer=default"
        )
