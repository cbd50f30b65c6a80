"""Loggers of ``sdegen train``: CSV always (``<run>/csv/metrics.csv``), W&B when configured.

W&B never blocks a run: without an API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
api.wandb.ai) or without a network connection (checked with a ~2 s connect), it runs offline
(``WANDB_MODE=offline``) and says so in one line; ``wandb sync <run>/wandb/offline-run-*`` uploads
it later.  Online, checkpoints are uploaded as artifacts when ``logger.wandb.log_model`` is set.
"""

from __future__ import annotations

import netrc
import os
import socket
import threading
from pathlib import Path

import hydra.utils
from omegaconf import OmegaConf

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


def build_loggers(cfg, run_dir=None) -> list:
    """Lightning loggers from ``cfg.logger`` (a mapping name -> ``_target_`` config), saving under
    ``run_dir`` (default: the Hydra run folder).  Only rank 0 probes W&B; other ranks reuse its mode."""
    logger_cfg = cfg.get("logger") or {}
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)
    loggers = []
    for name, conf in logger_cfg.items():
        if conf is None or "_target_" not in conf:
            continue
        conf = OmegaConf.to_container(conf, resolve=True) if OmegaConf.is_config(conf) else dict(conf)
        conf["save_dir"] = str(run_dir)
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
            print(f"[sdegen] W&B offline: {reason}; upload later with `wandb sync {run_dir / 'wandb'}/offline-run-*`",
                  flush=True)
    mode = os.environ.get("SDEGEN_WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    if mode == "offline" or conf.get("offline"):
        os.environ["WANDB_MODE"] = "offline"
        conf["offline"] = True
        conf["log_model"] = False  # artifacts need a connection
    if not conf.get("name"):
        conf["name"] = run_name(run_dir)
    conf.setdefault("config", None)
    wandb_config = conf.pop("config")
    logger = hydra.utils.instantiate(conf)
    if rank_zero_only.rank == 0:
        try:
            from .module import plain_config

            logger.experiment.config.update(plain_config(cfg) if wandb_config is None else wandb_config,
                                            allow_val_change=True)
        except Exception as err:  # noqa: BLE001 - logging must never stop training
            print(f"[sdegen] W&B config not logged: {err}", flush=True)
    return logger


def run_name(run_dir: Path) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            name = HydraConfig.get().job.override_dirname
            if name:
                return name
    except Exception:  # noqa: BLE001
        pass
    return run_dir.name
