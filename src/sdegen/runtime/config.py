"""Config helpers every command shares: where the configs live, the SDE from a config, the checks
that run before any work (SDE × schedule, numeric ranges, per-command task choices); the rule of
multirun sweeps over SDE configurations is ``runtime.sweeps``."""

from __future__ import annotations

from omegaconf import OmegaConf

from ..errors import UserError
from .registry import TASKS, config_dir, group_choices

__all__ = [
    "TASKS",
    "config_dir",
    "group_choices",
    "group_config",
    "to_plain",
    "build_sde",
    "incompatibility",
    "check_config",
]


def group_config(group: str, name: str) -> dict:
    """``configs/<group>/<name>.yaml`` as plain data (e.g. a sampler for ``compare=[...]``)."""
    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        valid = ", ".join(group_choices(group))
        raise UserError(f"{group}={name} is not a valid choice; valid {group} values: {valid}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def to_plain(cfg) -> dict:
    """The config as plain data, resolved where possible (``training.module.plain_config``, the one
    definition: checkpoints store the config that way)."""
    from ..training.module import plain_config

    return plain_config(cfg)


def build_sde(cfg):
    """Instantiate the configured SDE (with its schedule) from sdegen's registry of targets."""
    from .registry import build

    return build(cfg.sde, "sde", _convert_="all")


def incompatibility(cfg) -> str | None:
    """A one-line reason when the composed SDE and schedule do not go together."""
    if "sde" not in cfg or "schedule" not in cfg:
        return None
    from ..sde import check_compatible
    from .registry import build, get

    return check_compatible(get(cfg.sde._target_, "sde._target_"), build(cfg.schedule, "schedule"))


# --- checks before any work ---------------------------------------------------------------------------------
def check_sampler(cfg, key: str, sde=None) -> None:
    """Options of the sampler function and 0 < eps < T of the sampler config at ``key`` (types and ranges of
    each key: ``runtime.schema``)."""
    from ..samplers import build

    node = OmegaConf.select(cfg, key, default=None)
    if node is None:
        return
    try:
        driver = build(node).driver
    except UserError as err:
        raise UserError(str(err).replace("sampler.", f"{key}.", 1)) from None
    T = float(getattr(sde, "T", None) or OmegaConf.select(cfg, "sde.T", default=1.0) or 1.0)
    eps = driver.get("eps")
    if eps is not None and not 0 < float(eps) < T:
        raise UserError(f"{key}.eps must satisfy 0 < eps < T = {T:g}, got {eps}")


def check_task(cfg, command: str) -> str:
    """The task name, which must be one ``command`` can run."""
    name = str(OmegaConf.select(cfg, "task.name", default="generate"))
    if name not in TASKS[command]:
        raise UserError(f"task={name} is not a task of `sdegen {command}`; its tasks: {', '.join(TASKS[command])}")
    return name


def check_config(cfg, command: str) -> None:
    """Everything that can be checked from the config alone, before any work: the typed schema of every key
    (``runtime.schema``: types, ranges, choices, unknown keys) and the relations between keys."""
    from .schema import validate

    if command != "report":
        check_task(cfg, command)
    validate(cfg, command)
    if command == "report":
        return
    for key in ("sampler", "sample_grid.sampler"):
        check_sampler(cfg, key)
    eps = OmegaConf.select(cfg, "sde.eps", default=None)
    T = OmegaConf.select(cfg, "sde.T", default=None)
    if eps is not None and T is not None and not 0 < float(eps) < float(T):
        raise UserError(f"sde.eps must satisfy 0 < eps < sde.T = {T}, got {eps}")
    low = OmegaConf.select(cfg, "data.std_min", default=None)
    high = OmegaConf.select(cfg, "data.std_max", default=None)
    if low is not None and high is not None and not float(low) <= float(high):
        raise UserError(f"data.std_min must be <= data.std_max = {high}, got {low}")
