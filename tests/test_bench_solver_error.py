"""sdegen.bench.mixtures (scripts/bench_solver_error.py): the paired solver error is the difference of the
sampler's and the exact ODE's log-densities on the same prior draws (so the exact ODE scores 0 against itself,
with no Monte-Carlo noise), the exact solutions are cached and reused, and the mixture families are what the
docstring says."""

import torch

from sdegen.bench import mixtures as S
from sdegen.models.gmm import GaussianMixture


def test_mixture_families_match_their_description():
    issue = S.make_mixture("issue", 1000)
    assert (issue.num_components, issue.dim) == (4, 16)
    assert 0.03 <= float(issue.stds.min()) and float(issue.stds.max()) <= 0.4
    base = GaussianMixture.multiscale(**S.random_spec(3000) | dict(shape=(1, 4, 4)))
    doubled, halved = S.make_mixture("x2", 3000), S.make_mixture("x05", 3000)
    assert (
        doubled.dim == 16
        and torch.allclose(doubled.means, 2 * base.means)
        and torch.allclose(halved.means, base.means / 2)
    )
    assert torch.equal(doubled.stds, base.stds)
    hd = S.make_mixture("hd", 3300)
    assert hd.dim in (48, 64) and hd.num_components in (2, 3) and float(hd.stds.min()) >= 0.02
    assert float(S.make_mixture("large", 3200).stds.min()) >= 0.2
    for family, (mean_factor, std_factor) in S.SCALED.items():  # x3 / x03 / s2 / s05: other data scales
        scaled = S.make_mixture(family, 9400)
        base = GaussianMixture.multiscale(**S.random_spec(9400) | dict(shape=(1, 4, 4)))
        assert torch.allclose(scaled.means, mean_factor * base.means) and torch.allclose(
            scaled.stds, std_factor * base.stds
        )
    whole_doubled, whole_halved = S.make_mixture("s2", 9600), S.make_mixture("s05", 9600)
    assert abs(whole_doubled.data_std - 4 * whole_halved.data_std) < 1e-12  # the whole data scaled: its std too
    names = [f"{f}-{s}" for st in S.SETS.values() for f, s in st]
    assert len(names) == len(set(names)) and len(names) == 89  # the three sets are disjoint


def test_solver_error_is_paired_and_cached(tmp_path):
    exact_cfg = S.sampler_config("ode", ["start_noise=10", "end_noise=1e-4", "rtol=1.0e-7", "atol=1.0e-7"])
    assert exact_cfg["end_noise"] == 1e-4  # YAML 1.1's string '1e-4' read as a number
    problem = S.Problem("issue", 1000, 200, 10.0, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    error, se, _ = problem.solver_error(exact_cfg)
    assert abs(error) < 1e-9 and se < 1e-9  # the same flow from the same draws: no sampling noise left
    again = S.Problem("issue", 1000, 200, 10.0, tmp_path)  # loaded from the cache
    assert torch.equal(again.exact, problem.exact)
    # the 10-NFE recipe: a small bias (the 0.01 nats/dim target of the benchmark), with a paired SE far below
    # the unpaired one of the same n draws (the spread of the exact flow's log-densities over √n)
    error, se, nfe = problem.solver_error(S.sampler_config("dpm_solver", ["steps=9"]))
    unpaired = float(problem.exact.std()) / len(problem.exact) ** 0.5
    assert nfe == 10 and abs(error) < 0.015 and se < unpaired / 3, (error, se, unpaired)
