"""Step-count presets: what ``auto`` means in a sampler config, per sampler and step count.

A sampler config (``configs/sampler/<name>.yaml``) may set a key to ``auto``; the sampler driver
(``samplers.resolve_auto``) then takes its value from the table here for the sampler's ``_target_``:
the first row whose ``max_steps`` is at least ``sampler.steps``.  An explicit value always wins.

Each table is a tuple of rows ``(max_steps, {key: value, ...})`` in increasing ``max_steps`` (``INF``
for the last).  The values were chosen by the log-likelihood gap on exact Gaussian-mixture scores
(``docs/samplers.md`` gives the evidence); these scripts regenerate and validate them:

- ``scripts/bench_solver_error.py``: the paired solver error of ``dpm_solver``, ``unipc`` and
  ``dpm_solver_singlestep`` against the exact flow, per start, end and grid;
- ``scripts/bench_samplers.py``: the gap of every sampler at its presets (``--quick`` for a short run);
- ``scripts/heun_gaussian_bound.py --churn-table 12 24``: ``heun``'s end point and S_noise per step count.
"""

from __future__ import annotations

import copy
import math

INF = math.inf

#: the focus grid's options at 10 NFE (centre 3 × the data's std, a smaller bump) and at 20 NFE
_FOCUS_10 = {"center_std": 3.0, "boost": 0.5, "width": 0.5}
_FOCUS_20 = {"center_std": 4.0, "boost": 1.5, "width": 0.5}

#: multistep DPM-Solver: up to 12 steps the 10-NFE recipe (σ/α 10 → 0.02, half-step end); 13–24 steps
#: σ/α 20 → 0.005 on the focus grid; from 25 steps EDM's 80 → 0.005 on the log-SNR grid
DPM_SOLVER = (
    (12, {"start_noise": 10, "end_noise": 0.02, "grid": "focus", "grid_options": _FOCUS_10, "denoise": "half"}),
    (24, {"start_noise": 20, "end_noise": 0.005, "grid": "focus", "grid_options": _FOCUS_20, "denoise": True}),
    (INF, {"start_noise": 80, "end_noise": 0.005, "grid": "logsnr", "grid_options": {}, "denoise": True}),
)

#: singlestep DPM-Solver: the log-SNR grid for 1–2 steps (the focus bump would take one of them), then focus
DPM_SOLVER_SINGLESTEP = (
    (2, {"grid": "logsnr", "grid_options": {}}),
    (INF, {"grid": "focus", "grid_options": {}}),
)

#: UniPC: σ/α 20 → 0.006 up to 24 steps, EDM's 80 → 0.005 from 25; the corrector UniC from 11 steps
UNIPC = (
    (10, {"start_noise": 20, "end_noise": 0.006, "corrector": False}),
    (24, {"start_noise": 20, "end_noise": 0.006, "corrector": True}),
    (INF, {"start_noise": 80, "end_noise": 0.005, "corrector": True}),
)

_ALG1 = {"end_noise": 0.005, "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": INF, "s_noise": 1.0}


def _alg2(steps: int, end_noise: float, s_noise: float) -> tuple:
    """A row of EDM's Alg. 2 at ``steps``: γ = 0.2 per step (s_churn = 0.2 · steps) while 0.08 ≤ σ/α ≤ 2.5."""
    return (
        steps,
        {"end_noise": end_noise, "s_churn": round(0.2 * steps, 1), "s_tmin": 0.08, "s_tmax": 2.5, "s_noise": s_noise},
    )


def heun_s_noise(steps: int) -> float:
    """Alg. 2's S_noise at 12–24 steps: 1 − S_noise = 0.0381 (17/steps)^1.77 (the added noise cancels Heun's own
    over-dispersion on the shifted grid; fitted by ``scripts/heun_gaussian_bound.py --churn-table 12 24``)."""
    return 1.0 - 0.0381 * (17.0 / steps) ** 1.77


def heun_end_noise(steps: int) -> float:
    """Alg. 2's end point σ/α at 12–24 steps: 0.0371 √(1 − S_noise)."""
    return 0.0371 * math.sqrt(1.0 - heun_s_noise(steps))


#: EDM's Heun: Alg. 1 (deterministic, end σ/α 0.005) up to 11 and from 25 steps; at 12–24 steps Alg. 2 with the
#: end point and S_noise < 1 of the two formulas above (three constants)
HEUN = (
    (11, _ALG1),
    *(_alg2(steps, round(heun_end_noise(steps), 5), round(heun_s_noise(steps), 4)) for steps in range(12, 25)),
    (INF, _ALG1),
)

#: the presets of each sampler function (its ``_target_``)
PRESETS = {
    "sdegen.samplers.dpm_solver.sample_dpm_solver": DPM_SOLVER,
    "sdegen.samplers.dpm_solver_singlestep.sample_dpm_solver_singlestep": DPM_SOLVER_SINGLESTEP,
    "sdegen.samplers.unipc.sample_unipc": UNIPC,
    "sdegen.samplers.heun.sample_heun": HEUN,
}


def target_name(target) -> str:
    """The dotted path of a sampler's ``_target_`` (a string, or the function itself)."""
    if callable(target):
        return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', getattr(target, '__name__', ''))}"
    return str(target)


def table(target) -> tuple | None:
    """The preset table of the sampler function ``target``, or None when it has none."""
    return PRESETS.get(target_name(target))


def preset(target, steps: int) -> dict:
    """The preset values of ``target`` at ``steps`` steps (empty when it has no table)."""
    rows = table(target) or ()
    return copy.deepcopy(next((values for bound, values in rows if steps <= bound), {}))


__all__ = [
    "INF",
    "PRESETS",
    "DPM_SOLVER",
    "DPM_SOLVER_SINGLESTEP",
    "UNIPC",
    "HEUN",
    "heun_s_noise",
    "heun_end_noise",
    "table",
    "preset",
    "target_name",
]
