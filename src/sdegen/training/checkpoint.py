"""Loading trained score models: ``load_score_model(path) -> (model, cfg)``.

A checkpoint of ``sdegen train`` is a Lightning checkpoint whose ``state_dict`` holds the EMA
weights (``EMAWeightAveraging`` puts the raw ones under ``current_model_state``) and whose
``sdegen`` entry holds the resolved config and the data shape as plain data, so it loads with
``torch.load(..., weights_only=True)`` and without the training data.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import hydra.utils
import torch
from omegaconf import OmegaConf


def find_checkpoint(path) -> Path:
    """A checkpoint file from a file path, a run folder (``<run>/checkpoints/last.ckpt``) or a
    checkpoints folder; the newest ``*.ckpt`` when there is no ``last.ckpt``."""
    path = Path(str(path)).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"sdegen: no checkpoint or run folder at {path}")
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return candidate
    found = sorted(path.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"sdegen: no *.ckpt file under {path}")
    return found[-1]


def load_checkpoint(path, map_location="cpu") -> dict:
    return torch.load(find_checkpoint(path), map_location=map_location, weights_only=True)


def model_state(checkpoint: dict, prefix: str = "model.", ema: bool = True) -> dict:
    """The network's weights (EMA ones unless ``ema=False``) without the module prefix."""
    state = checkpoint["state_dict"] if ema or "current_model_state" not in checkpoint else checkpoint["current_model_state"]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_score_model(path, map_location="cpu", ema: bool = True):
    """``(model, cfg)``: the score network in eval mode with its EMA weights, and the run's config
    as a plain dict (``cfg["data"]``/``cfg["sde"]``... as composed, plus ``cfg["data_info"]`` with
    ``shape``, ``num_classes``, ``is_image``, ``scaling``).  ``model(x, t, y=None)`` is the score."""
    checkpoint = load_checkpoint(path, map_location)
    info = checkpoint.get("sdegen")
    if info is None:
        raise ValueError(f"sdegen: {path} is not a checkpoint written by `sdegen train`")
    cfg = dict(info["cfg"])
    cfg["data_info"] = dict(info["data"])
    from ..config import build_sde

    omega = OmegaConf.create({k: v for k, v in cfg.items() if k in ("sde", "schedule")})
    sde = build_sde(omega)
    data = SimpleNamespace(**cfg["data_info"])
    model = hydra.utils.instantiate(OmegaConf.create(cfg["model"]), sde=sde, data=data, _convert_="all")
    model.load_state_dict(model_state(checkpoint, ema=ema))
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval(), cfg
