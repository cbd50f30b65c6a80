"""Loggers of every command: CSV (``<run>/csv/metrics.csv``), W&B when configured.

W&B never blocks a run: without an API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
api.wandb.ai) or without a network connection (checked with a ~2 s connect), it runs offline
(``WANDB_MODE=offline``) and says so in one line; ``wandb sync <run>/wandb/offline-run-*`` uploads
it later.  Online, checkpoints are uploaded as artifacts when ``logger.wandb.log_model`` is set.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import socket
import threading
from pathlib import Path

import hydra.utils
from omegaconf import OmegaConf

from . import registry
from .config import to_plain

log = logging.getLogger("sdegen")

WANDB_HOST = "api.wandb.ai"


def wandb_api_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
        return netrc.netrc(path).authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def host_reachable(host: str = WANDB_HOST, port: int = 443, timeout: float = 2.0) -> bool:
    """A TCP connect within ``timeout`` seconds (DNS included: it runs in a thread we stop waiting for)."""
    result = [False]

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0]


def wandb_mode() -> tuple[str, str | None]:
    """("online"|"offline"|"disabled", reason for going offline or None)."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return ("disabled" if mode == "disabled" else "offline"), None
    if not wandb_api_key_present():
        return "offline", "no W&B API key (WANDB_API_KEY or ~/.netrc)"
    if not host_reachable():
        return "offline", f"{WANDB_HOST} is not reachable"
    return "online", None


def build_loggers(cfg, run_dir) -> list:
    """Lightning loggers from ``cfg.logger`` (a mapping name -> ``_target_`` config), saving under
    ``run_dir``.  Only rank 0 probes W&B; other ranks reuse its mode."""
    logger_cfg = cfg.get("logger") or {}
    run_dir = Path(run_dir)
    loggers = []
    for name, conf in logger_cfg.items():
        if conf is None or "_target_" not in conf:
            continue
        conf = OmegaConf.to_container(conf, resolve=True) if OmegaConf.is_config(conf) else dict(conf)
        conf["save_dir"] = str(run_dir)
        registry.check(conf, f"logger.{name}")  # only loggers named in configs/logger/
        if conf["_target_"].endswith("WandbLogger"):
            logger = _wandb_logger(conf, cfg, run_dir)
            if logger is not None:
                loggers.append(logger)
            continue
        loggers.append(hydra.utils.instantiate(conf))
    return loggers


def _wandb_logger(conf: dict, cfg, run_dir: Path):
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0 and "SDEGEN_WANDB_MODE" not in os.environ:
        mode, reason = wandb_mode()
        os.environ["SDEGEN_WANDB_MODE"] = mode  # inherited by DDP ranks relaunched later
        if reason is not None and not conf.get("offline"):
            log.info(f"W&B offline: {reason}; upload later with `wandb sync {run_dir / 'wandb'}/offline-run-*`")
    mode = os.environ.get("SDEGEN_WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")  # the one line above instead of ~20 `wandb:` lines
    if mode == "offline" or conf.get("offline"):
        os.environ["WANDB_MODE"] = "offline"
        conf["offline"] = True
        conf["log_model"] = False  # artifacts need a connection
    if not conf.get("name"):
        conf["name"] = run_name(run_dir)
    conf.setdefault("config", None)
    wandb_config = conf.pop("config")
    logger = hydra.utils.instantiate(conf)
    # Lightning passes anonymous=None, which this wandb answers with a deprecation line: not ours to print
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    if rank_zero_only.rank == 0:
        try:
            logger.experiment.config.update(
                to_plain(cfg) if wandb_config is None else wandb_config, allow_val_change=True
            )
        except Exception as err:  # noqa: BLE001 - logging must never stop training
            log.warning(f"W&B config not logged: {err}")
    return logger


def run_name(run_dir: Path) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            name = HydraConfig.get().job.override_dirname
            if name:
                return name
    except Exception:  # noqa: BLE001 - no Hydra run name: fall back to the folder's name
        pass
    return run_dir.name


def finish_wandb(loggers) -> None:
    """Close each W&B run (each job of a multirun gets its own run, flushed to disk)."""
    from lightning.pytorch.utilities import rank_zero_only

    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and rank_zero_only.rank == 0 and logger._experiment is not None:
            logger.experiment.finish()


def log_metrics(cfg, run_dir, metrics: dict, *, prefix: str = "", image=None) -> None:
    """Finite numbers of ``metrics`` (and an image) to the configured loggers; a logger that fails
    says so in one line and never loses the results (they are in metrics.json already)."""
    numbers = {
        f"{prefix}{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }
    try:
        loggers = build_loggers(cfg, run_dir)
    except Exception as err:  # noqa: BLE001 - logging must never lose the results
        log.warning(f"loggers unavailable ({err}); metrics.json only")
        return
    for logger in loggers:
        try:
            logger.log_metrics(numbers, step=0)
            if image is not None and hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(image)])
            logger.save()
            logger.finalize("success")
        except Exception as err:  # noqa: BLE001 - a logger's failure must not fail the finished run
            log.warning(f"logging to {type(logger).__name__} failed: {err}")
    finish_wandb(loggers)


class _DropAdverts(logging.Filter):
    """Lightning's advertisements and its inventory of absent accelerators (``TPU available: False ...``)."""

    def filter(self, record):
        text = str(record.msg)
        absent = text.split(" available: ", 1)[-1].startswith("False") and " available: " in text
        return "💡 Tip" not in text and "litlogger" not in text and not absent


def route_library_logs() -> None:
    """Each log line once: Lightning adds its own stderr handler to the ``lightning`` logger AND
    propagates to the root logger that Hydra configured (console + cli.log); drop its handler (when
    the root has handlers) and its advertisement lines."""
    import warnings

    import lightning  # noqa: F401 - its import adds the handler we remove

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # Lightning/torch internals
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())
