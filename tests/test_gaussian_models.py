"""sdegen.bench.gaussian (scripts/gaussian_spread_profile.py, scripts/heun_gaussian_bound.py): the
one-component error models behind docs/samplers.md ("On 89 mixtures", "`heun`")
agree with the samplers."""

import math

import pytest
import torch

from sdegen.bench import gaussian as G
from sdegen.runtime.config import group_config
from sdegen.samplers import end_time, start_time
from sdegen.samplers.grids import logsnr_grid
from sdegen.sde import standard_sdes

STDS = torch.exp(torch.linspace(math.log(0.02), math.log(0.6), 9, dtype=torch.float64))


@pytest.mark.parametrize("sde_name", ["ve", "vp-linear"])
def test_heun_closed_form_matches_the_sampler(sde_name):
    """Heun's spread factor from the closed-form recursion (the bound's model) equals what
    sample_heun does on a one-component mixture, to 1e-6 per dimension."""
    sde = standard_sdes()[sde_name]
    cfg = {**group_config("sampler", "heun"), "steps": 17, "grid": "logsnr", "end_noise": 0.002, "s_churn": 0.0}
    ts = logsnr_grid(sde, 17, end_time(sde, cfg), start=start_time(sde, cfg))
    sigmas = torch.exp(-sde.log_snr(ts))  # σ/α on the grid
    model = G.heun_spread_gap(sigmas, STDS)
    run = G.spread_gap(cfg, STDS, sde_name)
    torch.testing.assert_close(run, model, atol=1e-6, rtol=0)
    assert float(model.mean()) < -0.04  # the documented −0.05 at 35 NFE


def test_exact_ode_has_no_spread_error_and_dpm_solver_is_scale_free():
    """dopri5 at tight tolerance: only the Tweedie end's closed form σ²/(2(s² + σ²)) (E[x_0 | x_σ] shrinks
    the spread by s²/(s² + σ²), the exact flow by s/√(s² + σ²)).  DPM-Solver-3 on the log-SNR grid: the same
    over-concentration for every std inside the grid (the grid is scale-invariant), shrinking as a third-order
    method's does from 9 to 19 steps.  The 10-NFE recipe (focus grid, end 0.02, half-step end) is not
    scale-free (the sign changes with the std) but smaller on average."""
    sde = standard_sdes()["vp-linear"]
    ode = {**group_config("sampler", "ode"), "rtol": 1e-9, "atol": 1e-9, "end_noise": 0.004, "start_noise": 80}
    end = float(torch.exp(-sde.log_snr(torch.tensor(end_time(sde, ode), dtype=torch.float64))))
    torch.testing.assert_close(G.spread_gap(ode, STDS), end**2 / (2 * (STDS**2 + end**2)), atol=2e-5, rtol=0)
    inner = STDS[(STDS > 0.05) & (STDS < 0.5)]
    nine = G.spread_gap(
        {**group_config("sampler", "dpm_solver"), "steps": 9, "end_noise": 0.004, "grid": "logsnr", "denoise": True},
        inner,
    )
    assert float(nine.min()) > 0 and float(nine.max() - nine.min()) < 0.1 * float(nine.mean())  # scale-free
    recipe = G.spread_gap({**group_config("sampler", "dpm_solver"), "steps": 9}, inner)
    assert float(recipe.abs().max()) < 0.025 and float(recipe.abs().mean()) < 0.7 * float(nine.abs().mean())
    assert float(recipe.min()) < 0 < float(recipe.max())  # not scale-free: the sign changes with the std
    nineteen = G.spread_gap(
        {**group_config("sampler", "dpm_solver"), "start_noise": 80, "end_noise": 0.005, "grid": "logsnr"}, inner
    )
    assert float(nineteen.min()) > 0 and float(nineteen.mean()) < float(nine.mean()) / 3  # (9/19)³ ≈ 0.1


def test_alg2_variance_model_matches_the_sampler():
    """The Alg. 2 model behind heun's step-count presets (scripts/heun_gaussian_bound.py --churn-table):
    the spread's variance after churn + Heun + Tweedie equals sample_heun's on a one-component mixture
    (n = 100,000 per std: gap SE ≈ 0.0023), and it tells Alg. 2 at 17 steps from Alg. 1."""
    from omegaconf import OmegaConf

    from sdegen.models.gmm import GaussianMixture, GMMScore
    from sdegen.samplers import resolve_auto, sample

    sde = standard_sdes()["vp-linear"]
    cfg = resolve_auto(OmegaConf.create({**group_config("sampler", "heun"), "steps": 17}))
    assert cfg["s_churn"] > 0 and cfg["s_noise"] < 1  # the preset for 17 steps: Alg. 2
    dim = len(STDS)
    mixture = GaussianMixture(torch.zeros(1, dim, dtype=torch.float64), STDS[None], [1.0], (1, 1, dim))
    with torch.no_grad():
        x = (
            sample(cfg, GMMScore(mixture, sde), sde, (100_000, 1, 1, dim), generator=torch.Generator().manual_seed(0))
            .x.reshape(-1, dim)
            .double()
        )
    measured = -(x.var(0) / STDS**2 - 1) / 2
    t_start = torch.tensor(start_time(sde, cfg), dtype=torch.float64)
    sigmas = G.shifted_sigmas(17, float(torch.exp(-sde.log_snr(t_start))), cfg["end_noise"])
    model = G.heun_churn_gap(sigmas, STDS, cfg["s_churn"] / 17, cfg["s_noise"], cfg["s_tmin"], cfg["s_tmax"])
    torch.testing.assert_close(measured, model, atol=0.008, rtol=0)
    assert float(model.abs().max()) < 0.005  # the preset's fitted minimax over stds 0.02–0.6
    alg1 = G.heun_churn_gap(sigmas, STDS, 0.0, 1.0)
    torch.testing.assert_close(alg1, G.heun_spread_gap(sigmas, STDS), atol=1e-3, rtol=0)  # prior N(0, 80²) vs exact
    assert float(alg1.abs().max()) > 0.02
