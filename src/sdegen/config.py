"""Config checks shared by every command (run before any work), and small config helpers."""

from __future__ import annotations

import hydra.utils
from omegaconf import DictConfig, OmegaConf


def incompatibility(cfg: DictConfig) -> str | None:
    """A one-line reason when the composed SDE and schedule do not go together."""
    if "sde" not in cfg or "schedule" not in cfg:
        return None
    from .sde import check_compatible

    sde_cls = hydra.utils.get_class(cfg.sde._target_)
    schedule = hydra.utils.instantiate(cfg.schedule)
    return check_compatible(sde_cls, schedule)


def guard(cfg: DictConfig) -> bool:
    """True when the job should run.  An incompatible SDE × schedule pair is skipped with one line
    in a multirun (so sweeps over all combinations never crash) and is an error in a single run."""
    reason = incompatibility(cfg)
    if reason is None:
        return True
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:
        choices = HydraConfig.get().runtime.choices
        print(f"[sdegen] skipped sde={choices.get('sde')} schedule={choices.get('schedule')}: {reason}", flush=True)
        return False
    raise SystemExit(f"sdegen: error: {reason}")


def to_plain(cfg) -> dict:
    """Resolved config as plain Python data (for checkpoints and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def build_sde(cfg: DictConfig):
    """Instantiate the configured SDE (with its schedule)."""
    return hydra.utils.instantiate(cfg.sde, _convert_="all")
