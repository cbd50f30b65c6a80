"""Guidance: transforms of a score function, composable with every sampler and SDE.

``apply_guidance(guidance_cfg, score_model, sde, data, device)`` returns the score function a
sampler should use.  ``guidance=none`` returns the model itself; any other ``name`` is looked up
as the module ``sdegen.guidance.<name>`` whose ``build(guidance_cfg, score_model, sde, data, device)``
returns the guided ``score_fn(x, t)``.  A new guidance method is one file plus one YAML.
"""

from __future__ import annotations

import importlib


def apply_guidance(guidance_cfg, score_model, sde, data=None, device="cpu"):
    name = (guidance_cfg or {}).get("name", "none")
    if name in (None, "none"):
        return score_model
    try:
        module = importlib.import_module(f"sdegen.guidance.{name}")
    except ModuleNotFoundError:
        raise ValueError(f"unknown guidance {name!r}: no module sdegen.guidance.{name}") from None
    return module.build(guidance_cfg, score_model, sde, data, device)
