"""Restart sampling (Xu et al. 2023) on the exact Gaussian-mixture scores: exact NFE and hook times,
no restarts = EDM Heun exactly, the log-likelihood gap at converged settings, the contraction of an
error the ODE alone keeps (the point of Restart), guidance and inpainting."""

from __future__ import annotations

import math

import pytest
import torch

from sdegen.metrics.distances import component_occupancy
from sdegen.metrics.gap import data_log_likelihood
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.samplers import end_time, sample, start_time
from sdegen.samplers.grids import time_grid
from sdegen.samplers.heun import sample_heun
from sdegen.samplers.restart import sample_restart
from test_samplers import SDES, SHAPE, check_gap, sampler_cfg


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.multiscale(num_components=4, shape=SHAPE, std_min=0.03, std_max=0.5, seed=0)


def ratio(sde, t):
    return float(torch.exp(-sde.log_snr(torch.as_tensor(t, dtype=torch.float64))))


@pytest.mark.parametrize("sde_name", ["ve", "subvp-linear"])
def test_nfe_is_exact_and_every_ode_landing_is_hooked(mixture, sde_name):
    """NFE = 2·steps + Σ 2 n K + 1; the hook sees every main-grid time once, in order, and each
    restart pass's interior points on EDM's ρ = 7 grid from s_max down to s_min."""
    sde = SDES[sde_name]
    model = GMMScore(mixture, sde)
    calls, hooked = [0], []

    def counted(x, t):
        calls[0] += 1
        return model(x, t)

    restarts = [[2, 3, 0.06, 0.3], [3, 2, 0.5, 2.0]]
    cfg = sampler_cfg("restart", steps=9, restarts=restarts)
    result = sample(
        cfg,
        counted,
        sde,
        (5, *SHAPE),
        step_hook=lambda x, t: hooked.append(float(t)) or x,
        generator=torch.Generator().manual_seed(0),
        snapshot_every=3,
    )
    assert result.nfe == calls[0] == 2 * 9 + 2 * 2 * 3 + 2 * 3 * 2 + 1
    assert len(hooked) == 9 + 2 * 3 + 3 * 2 + 1 and hooked[-1] == 0.0
    grid = time_grid(sde, 9, end_time(sde, cfg), cfg["grid"], start=start_time(sde, cfg)).tolist()
    main = [t for t in hooked[:-1] if t in grid]
    # each restart grid point is revisited once per pass: K extra landings there
    log_r = [math.log(ratio(sde, t)) for t in grid]
    at = {
        k: min(range(1, len(grid)), key=lambda j: abs(log_r[j] - math.log(s)))
        for k, (_, _, s, _) in enumerate(restarts)
    }
    expected_main = []
    for j in range(1, len(grid)):
        expected_main += [grid[j]] * (1 + sum(restarts[k][1] for k in at if at[k] == j))
    assert main == expected_main
    interior = [ratio(sde, t) for t in hooked[:-1] if t not in grid]
    s_min = ratio(sde, grid[at[0]])
    first = (0.3 ** (1 / 7) + 0.5 * (s_min ** (1 / 7) - 0.3 ** (1 / 7))) ** 7  # n = 2: one interior point
    assert [v for v in interior if v < 0.3] == pytest.approx([first] * 3, rel=1e-6)  # 3 passes of n = 2
    assert len([v for v in interior if v > 0.3]) == 2 * 2  # 2 passes of n = 3: two interior points each
    assert len(result.trajectory) == len(result.times) == 1 + 3 and result.times[-1] == grid[-1]


@pytest.mark.parametrize("sde_name", ["ve", "vp-cosine"])
def test_without_restarts_it_is_edm_heun(mixture, sde_name):
    sde = SDES[sde_name]
    model = GMMScore(mixture, sde)
    cfg = sampler_cfg("restart", steps=12)
    x = torch.randn(32, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grid = time_grid(sde, 12, end_time(sde, cfg), cfg["grid"], start=start_time(sde, cfg))
    a = sample_restart(model, sde, x.clone(), grid, restarts=[])
    b = sample_heun(model, sde, x.clone(), grid)
    assert a.nfe == b.nfe == 25
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def data_logp(mixture):
    return data_log_likelihood(mixture, 100_000, seed=5)


@pytest.mark.parametrize("sde_name", ["ve", "vp-linear", "subvp-cosine"])
def test_gap_at_converged_settings(mixture, data_logp, sde_name):
    """With enough main steps (log-SNR grid, as heun's default) and restarts at s ≤ 2, the exact
    scores give |gap| ≤ 0.01 + 3 SE: the forward jump and the re-run ODE keep the right marginal."""
    sde = SDES[sde_name]
    cfg = sampler_cfg("restart", steps=50, grid="logsnr", restarts=[[10, 2, 0.05, 0.3], [6, 1, 0.3, 2.0]])
    result = sample(cfg, GMMScore(mixture, sde), sde, (8000, *SHAPE), generator=torch.Generator().manual_seed(1))
    assert result.nfe == 2 * 50 + 2 * 10 * 2 + 2 * 6 + 1
    check_gap(mixture, result.x, data_logp)


class WrongAboveScore:
    """The exact score below σ/α = s_switch and, above it, the score of the same components with
    85 % of the weight on the lightest one: an error the ODE carries to the end (a trained
    network's early mistakes)."""

    def __init__(self, mixture, sde, s_switch):
        weights = torch.full_like(mixture.weights, 0.05)
        weights[mixture.weights.argmin()] = 0.85
        wrong = GaussianMixture(mixture.means, mixture.stds, weights, mixture.shape)
        self.right, self.wrong = GMMScore(mixture, sde), GMMScore(wrong, sde)
        self.t_switch = float(sde.t_from_log_snr(-torch.log(torch.tensor(s_switch, dtype=torch.float64))))

    def __call__(self, x, t):
        return (self.wrong if float(t.reshape(-1)[0]) > self.t_switch else self.right)(x, t)


@pytest.mark.parametrize("sde_name", ["ve", "vp-linear"])
def test_restart_contracts_an_error_the_ode_keeps(mixture, sde_name):
    """Xu et al. 2023, Thm. 2: each restart shrinks the distance to the target.  With the weights
    wrong above σ/α = 2.5, the Heun ODE alone ends with the wrong component occupancy; 12 restarts
    of [0.1, 2.4] (exact scores there) bring it within 4 binomial σ of the right one."""
    sde = SDES[sde_name]
    score, n = WrongAboveScore(mixture, sde, 2.5), 4000
    q = component_occupancy(mixture, mixture.sample(40000, generator=torch.Generator().manual_seed(7))[0])
    tol = 4 * torch.sqrt(q * (1 - q) / n) + 4 * torch.sqrt(q * (1 - q) / 40000)

    def occupancy(restarts):
        cfg = sampler_cfg("restart", steps=30, grid="logsnr", restarts=restarts)
        return component_occupancy(
            mixture, sample(cfg, score, sde, (n, *SHAPE), generator=torch.Generator().manual_seed(2)).x
        )

    ode_only, restarted = occupancy([]), occupancy([[4, 12, 0.1, 2.4]])
    assert ((ode_only - q).abs() > 3 * tol).any(), f"ODE alone {ode_only.tolist()} vs {q.tolist()}: no error to fix"
    assert ((restarted - q).abs() <= tol).all(), f"restart {restarted.tolist()} vs {q.tolist()}"


def test_guided_sampling_matches_the_class_conditional(mixture):
    """Exact-posterior classifier guidance (a score transform): the target is component 2 alone."""
    from sdegen.guidance.classifier import classifier_guidance

    sde = SDES["subvp-linear"]
    model = GMMScore(mixture, sde)
    guided = classifier_guidance(model, model.class_log_posterior, 2, 1.0)
    target = GaussianMixture(mixture.means[2:3], mixture.stds[2:3], [1.0], mixture.shape)
    cfg = sampler_cfg("restart", steps=50, grid="logsnr", restarts=[[4, 2, 0.05, 0.3]])
    x = sample(cfg, guided, sde, (4000, *SHAPE), generator=torch.Generator().manual_seed(3)).x
    check_gap(target, x, data_log_likelihood(target, 50_000, seed=6))


def test_inpainting_matches_the_exact_conditional(mixture):
    """The replacement hook (run after every ODE step, restarts included) against the exact
    conditional of the missing coordinates, at the level the other samplers reach."""
    from sdegen.sde import VESDE, GeometricSigma
    from sdegen.tasks.inpaint import exact_imputation_error

    mask = torch.zeros(1, *SHAPE[1:])
    mask[..., :2, :] = 1  # top half known
    sde = VESDE(GeometricSigma())
    heun = exact_imputation_error(
        mixture, sde, GMMScore(mixture, sde), sampler_cfg("heun", steps=30), mask, n_obs=4, per_obs=200
    )
    restart = exact_imputation_error(
        mixture,
        sde,
        GMMScore(mixture, sde),
        sampler_cfg("restart", steps=30, grid="logsnr"),
        mask,
        n_obs=4,
        per_obs=200,
    )
    assert restart["known_error"] == 0
    assert restart["sw2"] < heun["sw2"] + 0.05 and restart["tv"] < heun["tv"] + 0.05, (heun, restart)


def test_bad_intervals_are_refused(mixture):
    sde = SDES["vp-linear"]
    for restarts in (
        [[2, 2, 0.3]],
        [[0, 2, 0.06, 0.3]],
        [[2, -1, 0.06, 0.3]],
        [[2, 2, 0.3, 0.06]],
        [[2, 2, 0.001, 0.0015]],
    ):
        with pytest.raises(ValueError, match="restart interval"):
            sample(sampler_cfg("restart", steps=5, restarts=restarts), GMMScore(mixture, sde), sde, (2, *SHAPE))
