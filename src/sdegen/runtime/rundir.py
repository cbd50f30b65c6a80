"""Where a command writes: its run folder (the Hydra output dir) and the cache (``SDEGEN_CACHE``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import UserError


def run_dir(cfg=None) -> Path:
    """The run folder: Hydra's output dir inside a Hydra run, else ``cfg.output_dir`` (notebooks)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    out = (cfg or {}).get("output_dir") if cfg is not None else None
    if not out:
        raise UserError("no run folder: call the command through `sdegen` or set output_dir=PATH")
    return Path(str(out))


def cache_dir(sub: str = "") -> Path:
    """``$SDEGEN_CACHE`` (default ``$XDG_CACHE_HOME/sdegen`` or ``~/.cache/sdegen``), or a subfolder of it."""
    root = os.environ.get("SDEGEN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdegen"
    return Path(root).expanduser() / sub if sub else Path(root).expanduser()


#: what Hydra writes into a run folder before the command starts
HYDRA_FILES = {".hydra", "cli.log"}


def remove_if_untouched(folder) -> bool:
    """Remove a run folder that holds only what Hydra wrote before the command started (a command
    that failed validation leaves nothing behind).  Returns True when it was removed."""
    folder = Path(folder)
    if not folder.is_dir() or any(p.name not in HYDRA_FILES for p in folder.iterdir()):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True
