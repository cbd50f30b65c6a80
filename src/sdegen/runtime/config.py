"""Config helpers every command shares: where the configs live, the SDE from a config, the checks
that run before any work (SDE × schedule, numeric ranges, per-command task choices); the rule of
multirun sweeps over SDE configurations is ``runtime.sweeps``."""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

import hydra.utils
from omegaconf import OmegaConf

from ..errors import UserError

#: the task choices each command can run (one `task` group, validated per command)
TASKS = {"train": ("generate", "classifier"), "sample": ("generate", "inpaint", "colorize"),
         "eval": ("generate", "classifier"), "report": ()}


def config_dir() -> Path:
    """Configs ship inside the wheel (``sdegen/configs``); an editable install uses the repo's."""
    packaged = Path(str(importlib.resources.files("sdegen"))) / "configs"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "configs"
    if repo.is_dir():
        return repo
    raise UserError("cannot find the configs folder (reinstall the package)")


def group_choices(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def group_config(group: str, name: str) -> dict:
    """``configs/<group>/<name>.yaml`` as plain data (e.g. a sampler for ``compare=[...]``)."""
    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"{group}={name} is not a valid choice; valid {group} values: {', '.join(group_choices(group))}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def to_plain(cfg) -> dict:
    """The config as plain data, resolved where possible (``training.module.plain_config``, the one
    definition: checkpoints store the config that way)."""
    from ..training.module import plain_config

    return plain_config(cfg)


def build_sde(cfg):
    """Instantiate the configured SDE (with its schedule)."""
    return hydra.utils.instantiate(cfg.sde, _convert_="all")


def incompatibility(cfg) -> str | None:
    """A one-line reason when the composed SDE and schedule do not go together."""
    if "sde" not in cfg or "schedule" not in cfg:
        return None
    from ..sde import check_compatible

    sde_cls = hydra.utils.get_class(cfg.sde._target_)
    return check_compatible(sde_cls, hydra.utils.instantiate(cfg.schedule))


# --- numeric ranges and choices, checked before any work --------------------------------------------
def _at_least(cfg, key: str, low: int) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low or value != int(value):
        raise UserError(f"{key} must be an integer >= {low}, got {value!r}")


def check_sampler(cfg, key: str, sde=None) -> None:
    """Typos, steps >= 1, resample >= 1 and 0 < eps < T of the sampler config at ``key``."""
    from ..samplers import split_config

    node = OmegaConf.select(cfg, key, default=None)
    if node is None:
        return
    try:
        _, driver, _ = split_config(node)
    except UserError as err:
        raise UserError(str(err).replace("sampler.", f"{key}.", 1)) from None
    T = float(getattr(sde, "T", None) or OmegaConf.select(cfg, "sde.T", default=1.0) or 1.0)
    eps = driver.get("eps")
    if eps is not None and not 0 < float(eps) < T:
        raise UserError(f"{key}.eps must satisfy 0 < eps < T = {T:g}, got {eps}")
    end_noise = driver.get("end_noise")
    if end_noise is not None and not float(end_noise) > 0:
        raise UserError(f"{key}.end_noise must be > 0 (a noise-to-signal ratio σ/α), got {end_noise}")


def check_task(cfg, command: str) -> str:
    """The task name, which must be one ``command`` can run."""
    name = str(OmegaConf.select(cfg, "task.name", default="generate"))
    if name not in TASKS[command]:
        raise UserError(f"task={name} is not a task of `sdegen {command}`; its tasks: {', '.join(TASKS[command])}")
    return name


def check_config(cfg, command: str) -> None:
    """Every range and choice that can be checked from the config alone (before any work)."""
    if command == "report":
        return
    check_task(cfg, command)
    for key in ("n_samples", "batch_size", "eval.bpd.n_points", "eval.bpd.batch_size", "eval.is_splits",
                "eval.ref_size", "task.resample", "val_every", "trainer.max_steps", "checkpoint.every_n_steps",
                "sample_grid.n_samples", "task.eval.n_points", "task.eval.n_times", "threads"):
        low = 0 if key == "sample_grid.n_samples" else 1
        if key == "trainer.max_steps" and OmegaConf.select(cfg, key, default=None) == -1:
            continue  # Lightning's "no limit" (max_time or max_epochs stop the run)
        _at_least(cfg, key, low)
    for key in ("sampler", "sample_grid.sampler"):
        check_sampler(cfg, key)
    eps = OmegaConf.select(cfg, "sde.eps", default=None)
    T = OmegaConf.select(cfg, "sde.T", default=None)
    if eps is not None and T is not None and not 0 < float(eps) < float(T):
        raise UserError(f"sde.eps must satisfy 0 < eps < sde.T = {T}, got {eps}")
    lr = OmegaConf.select(cfg, "optim.lr", default=None)
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UserError(f"optim.lr must be a finite number > 0, got {lr!r}")
    decay = OmegaConf.select(cfg, "optim.decay", default=None)
    if decay is not None and str(decay) not in ("none", "linear", "cosine"):
        raise UserError(f"optim.decay must be none, linear or cosine, got {decay!r}")
    decay_start = OmegaConf.select(cfg, "optim.decay_start", default=None)
    if decay_start is not None and not (isinstance(decay_start, (int, float)) and 0 <= decay_start < 1):
        raise UserError(f"optim.decay_start must be a fraction of trainer.max_steps in [0, 1), got {decay_start!r}")
    from ..training.speed import check_speed_options

    check_speed_options(cfg)
