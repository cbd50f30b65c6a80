"""SDE × schedule in single runs and sweeps: what runs is what its name says, and a choice that changes
nothing in training is said or refused.

* ``SdeSweeps`` (in ``hydra_plugins.sdegen_sweeper.SdeSweeper``, the ``hydra.sweeper`` of
  configs/hydra/default.yaml) is Hydra's basic sweeper with the SDE configurations made meaningful
  before any job is launched: VE, which has its own geometric σ(t) and no β(t), runs once per sweep with
  ``schedule=geometric`` (so its job folder, dry-run line and report row say ``ve-geometric``), and a
  VP/sub-VP job with the VE schedule is left out.  ``sde=ve,vp,subvp schedule=linear,cosine`` is then the
  thesis's five configurations.  A sweep that varies ``sde``/``schedule`` under a loss that does not follow
  the SDE (``loss=edm``: ln σ/α ~ N(p_mean, p_std²) whatever the SDE) would train one network several
  times: it is refused in one line before anything is written.
* ``guard(cfg)`` runs first in every job: an incompatible SDE × schedule in a single run is a
  ``UserError``; a single ``sdegen train`` under such a loss where the user set ``sde=``/``schedule=``
  says in one line what they change and what they do not.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from omegaconf import OmegaConf

from ..errors import UserError
from .config import config_dir, incompatibility

#: the config groups that make an SDE configuration
SDE_KEYS = ("sde", "schedule")


# --- SDE configurations by choice name ---------------------------------------------------------------
@functools.cache
def own_schedule(sde: str) -> str | None:
    """The schedule an SDE's config selects for itself (``sde=ve``: ``geometric``), or None."""
    path = config_dir() / "sde" / f"{sde}.yaml"
    if not path.is_file():
        return None
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1] == "schedule":
                    return str(value)
    return None


@functools.cache
def pair_reason(sde: str, schedule: str) -> str | None:
    """A one-line reason when ``sde=<sde> schedule=<schedule>`` do not go together, else None."""
    paths = config_dir() / "sde" / f"{sde}.yaml", config_dir() / "schedule" / f"{schedule}.yaml"
    if not all(p.is_file() for p in paths):
        return None  # an unknown choice: Hydra's own error names it
    target = OmegaConf.load(paths[0]).get("_target_")
    return incompatibility(OmegaConf.create({"sde": {"_target_": target}, "schedule": OmegaConf.load(paths[1])}))


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _value(job: Sequence[str], key: str, default: str | None) -> str | None:
    values = [o.split("=", 1)[1] for o in job if "=" in o and _key(o) == key]
    return values[-1] if values else default


def sde_jobs(jobs: list[list[str]], choices: dict) -> tuple[list[list[str]], str | None]:
    """The jobs of a sweep with its SDE configurations made meaningful, and one line saying what changed
    (None when nothing did).  ``choices``: the group choices of the config the sweep starts from.

    A job whose SDE has its own schedule (VE) runs it (``schedule=geometric``; duplicates then run once); a
    job whose schedule its SDE cannot use otherwise is left out."""
    kept, seen, own, left_out = [], set(), set(), []
    for job in jobs:
        sde = _value(job, "sde", choices.get("sde"))
        schedule = _value(job, "schedule", own_schedule(sde) if sde else None) or choices.get("schedule")
        if sde and schedule and pair_reason(sde, schedule) is not None:
            fixed = own_schedule(sde)
            if fixed is None or pair_reason(sde, fixed) is not None:
                left_out.append(f"{sde}-{schedule}")
                continue
            own.add(f"sde={sde} runs with its own schedule={fixed}")
            job = [f"schedule={fixed}" if _key(o) == "schedule" else o for o in job]
            if not any(_key(o) == "schedule" for o in job):
                job.append(f"schedule={fixed}")
        if tuple(job) not in seen:
            seen.add(tuple(job))
            kept.append(job)
    if not own and not left_out:
        return kept, None
    parts = [f"{', '.join(sorted(own))} (once per sweep)"] if own else []
    if left_out:
        parts.append(f"left out {', '.join(dict.fromkeys(left_out))} (an SDE with a schedule it cannot use)")
    return kept, f"[sdegen] sweep of {len(kept)} job(s): " + "; ".join(parts)


def sde_agnostic_sweep(jobs: list[list[str]], choices: dict) -> str | None:
    """The one-line reason to refuse a sweep that varies sde/schedule under a loss that ignores the SDE."""
    if choices.get("loss") is None:
        return None  # a command without a loss (sample, eval)
    from ..training.losses import LOSSES

    configs: dict[str, set] = {}
    for job in jobs:
        loss = _value(job, "loss", choices.get("loss"))
        if loss in LOSSES and not LOSSES[loss].follows_sde:
            pair = (_value(job, "sde", choices.get("sde")), _value(job, "schedule", choices.get("schedule")))
            configs.setdefault(loss, set()).add(pair)
    for loss, pairs in configs.items():
        if len(pairs) > 1:
            following = ", ".join(name for name, cls in LOSSES.items() if cls.follows_sde)
            return (
                f"this sweep varies sde/schedule under loss={loss}, whose noise levels do not depend on the SDE "
                f"(ln σ/α ~ N(p_mean, p_std²)): its jobs would train the same network; add loss=sigma2 "
                f"(losses that follow the SDE: {following})"
            )
    return None


class SdeSweeps:
    """Mixed into Hydra's basic sweeper (``hydra_plugins.sdegen_sweeper.SdeSweeper``, which Hydra's plugin
    scan defines against the ``BasicSweeper`` it loads): the meaningful SDE configurations (``sde_jobs``),
    and a sweep of sde/schedule under a loss that ignores the SDE refused (``sde_agnostic_sweep``) before
    anything is written."""

    def sweep(self, arguments: list[str]):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        choices = dict(self.config.hydra.runtime.choices or {})
        if "loss" in self.config and self.config.loss is not None:
            choices.setdefault("loss", self.config.loss.get("name"))
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        jobs = [job for batch in super().split_arguments(overrides, None) for job in batch]
        kept, note = sde_jobs(jobs, choices)
        reason = sde_agnostic_sweep(kept, choices)
        if reason is not None:
            raise UserError(reason)
        if not kept:
            raise UserError(f"no job of this sweep can run: {note}")
        if note:
            print(note, flush=True)
        self._jobs = kept
        return super().sweep(arguments)

    def split_arguments(self, overrides, max_batch_size):  # called by BasicSweeper.sweep: the kept jobs
        jobs = self._jobs
        size = max_batch_size if max_batch_size and max_batch_size > 0 else len(jobs)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]


# --- every job ----------------------------------------------------------------------------------------
def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sde_notice(cfg, given: Sequence[str]) -> str | None:
    """The one line for a single training run under a loss that ignores the SDE where the user set
    ``sde=``/``schedule=`` (``given``: the keys set on the command line), else None."""
    loss = cfg.get("loss") if "loss" in cfg else None
    if loss is None or str(cfg.get("task", {}).get("name", "generate")) != "generate":
        return None
    set_here = [k for k in SDE_KEYS if k in given]
    from ..training.losses import LOSSES

    name = str(loss.get("name"))
    if not set_here or name not in LOSSES or LOSSES[name].follows_sde:
        return None
    which = " and ".join(f"{k}=" for k in set_here)
    return (
        f"[sdegen] note: under loss={name} {which} change sampling with em/pc, the prior and bits/dim, not the "
        f"network (loss={name} draws ln σ/α ~ N(p_mean, p_std²) whatever the SDE and sees only σ/α); "
        f"loss=sigma2 trains on the chosen SDE's own noise levels"
    )


def guard(cfg) -> bool:
    """True when the job should run.

    A single run with an incompatible SDE × schedule pair is a ``UserError``; a single training run under a
    loss that ignores the SDE where ``sde=``/``schedule=`` was given prints ``sde_notice``.  In a multirun
    ``SdeSweeper`` has made the pairs meaningful; an incompatible pair left by another sweeper is skipped
    with one line."""
    reason = incompatibility(cfg)
    if not _multirun():
        if reason is not None:
            raise UserError(reason)
        from .setup import cli_overrides

        line = sde_notice(cfg, cli_overrides())
        if line:
            print(line, flush=True)
        return True
    if reason is None:
        return True
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices
    print(f"[sdegen] skipped sde={choices.get('sde')} schedule={choices.get('schedule')}: {reason}", flush=True)
    return False
