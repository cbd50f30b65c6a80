"""Guidance: transforms of a score function, composable with every sampler and SDE.

``apply_guidance(guidance_cfg, score_model, sde, data, device, classifier=None)`` returns the score
function a sampler should use.  ``guidance=none`` returns the model itself, except for a class-conditional
network (``model.conditional=true``): it samples the marginal p(x) = Σ_y p(y) p(x | y) with labels drawn
uniformly per sample (``guidance=cfg guidance.label=random guidance.scale=0``; ``guidance.scale=-1``
gives the null-label score s(x, t, ∅) instead).  Any other ``name`` is
one of ``BUILDERS`` (``build(guidance_cfg, score_model, sde, data, device, classifier)`` of its
module).  A new guidance method is one file plus one YAML plus one line here.
"""

from __future__ import annotations

from ..errors import UserError
from . import cfg as _cfg
from . import classifier as _classifier

BUILDERS = {"classifier": _classifier.build, "cfg": _cfg.build}


def apply_guidance(guidance_cfg, score_model, sde, data=None, device="cpu", classifier=None):
    name = (guidance_cfg or {}).get("name", "none")
    if name in (None, "none"):
        if getattr(score_model, "class_conditional", False) and getattr(score_model, "num_classes", 0):
            return _cfg.build({"label": "random", "scale": 0.0}, score_model, sde, data, device)
        return score_model
    if name not in BUILDERS:
        raise UserError(f"guidance={name} is not known; valid: none, {', '.join(BUILDERS)}")
    return BUILDERS[name](guidance_cfg, score_model, sde, data, device, classifier=classifier)
