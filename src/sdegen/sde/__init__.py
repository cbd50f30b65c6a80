"""SDEs (VE, VP, sub-VP) and their schedules."""

from .base import SDE, expand_as
from .schedules import BetaSchedule, CosineSchedule, GeometricSigma, LinearSchedule
from .subvp import SubVPSDE
from .ve import VESDE
from .vp import VPSDE


def check_compatible(sde_target, schedule) -> str | None:
    """Return a one-line reason when an SDE class cannot use a schedule, else None."""
    kind = getattr(schedule, "kind", None)
    if sde_target.schedule_kind == kind:
        return None
    if sde_target.schedule_kind == "sigma":
        return (
            f"sde={sde_target.name} uses its geometric σ(t) = σ_min(σ_max/σ_min)^t (schedule=geometric); "
            f"a β(t) schedule ({type(schedule).__name__}) has no meaning for it"
        )
    return (
        f"sde={sde_target.name} is built from a β(t) schedule (schedule=linear or cosine); "
        f"{type(schedule).__name__} is the VE σ(t) schedule"
    )


__all__ = [
    "SDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "BetaSchedule",
    "LinearSchedule",
    "CosineSchedule",
    "GeometricSigma",
    "expand_as",
    "check_compatible",
    "standard_sdes",
]


def standard_sdes() -> dict:
    """The thesis's five SDE configurations with score_sde's default parameters, by name:
    ve, vp-linear, vp-cosine, subvp-linear, subvp-cosine (fresh instances)."""
    return {
        "ve": VESDE(GeometricSigma()),
        "vp-linear": VPSDE(LinearSchedule()),
        "vp-cosine": VPSDE(CosineSchedule()),
        "subvp-linear": SubVPSDE(LinearSchedule()),
        "subvp-cosine": SubVPSDE(CosineSchedule()),
    }
