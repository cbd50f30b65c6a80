"""Every sampler × every SDE on the exact Gaussian-mixture score, plus unit checks (NFE, hooks,
determinism, grids) and convergence orders against the analytic probability-flow ODE of a Gaussian.

Gap test: the log-likelihood gap (E_samples[log p] − E_data[log p]) / D (``sdegen.metrics.gap``) is
exact on the mixture; each default must be within 0.01 nats/dim (the accuracy target of the
defaults, chosen in scripts/bench_samplers.py) plus 3 standard errors of the estimate, so a
biased sampler fails and an exact one passes at any seed.

Distribution test: plain sliced W2 between two sample sets of a well-separated mixture is
dominated by the multinomial noise of the component counts (a sample moving between modes
moves a whole quantile across a gap), so its ratio to the noise floor fluctuates by ±30 % even
for exact samples.  We therefore test the two parts separately: component occupancy against the
weights (binomial error), and the sliced W2 *within each component* (samples assigned to their
most likely component, size-weighted), whose ratio to the same statistic between fresh sets has
a ~5 % spread, against 1.2× the floor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sdegen.cli import config_dir
from sdegen.metrics.distances import component_occupancy, sliced_wasserstein2
from sdegen.metrics.gap import data_log_likelihood, log_likelihood_gap
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.samplers import CountingScore, end_time, resolve_auto, sample, start_time
from sdegen.samplers.grids import focus_grid, time_grid
from sdegen.sde import standard_sdes

SDES = standard_sdes()
SAMPLERS = ("em", "pc", "ode", "dpm_solver", "heun", "unipc", "dpm_solver_singlestep", "dpm_solver_sde", "restart")
FAST = ("ode", "dpm_solver", "heun", "unipc", "dpm_solver_singlestep")
SHAPE = (1, 4, 4)


def sampler_cfg(name, **overrides):
    cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "sampler" / f"{name}.yaml"))
    cfg.update(overrides.pop("options", {}))
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.multiscale(num_components=4, shape=SHAPE, std_min=0.03, std_max=0.5, seed=0)


def within_component_sw(mixture, a, b):
    """sqrt(Σ_k n_k SW²(a_k, b_k) / N): sliced W2 inside each component (equal-size subsets)."""
    la, lb = mixture.component_log_probs(a).argmax(1), mixture.component_log_probs(b).argmax(1)
    total = 0.0
    for k in range(mixture.num_components):
        xa, xb = a[la == k], b[lb == k]
        n = min(len(xa), len(xb))
        if n > 1:
            total += n * sliced_wasserstein2(xa[:n], xb[:n], n_projections=128) ** 2
    return math.sqrt(total / len(a))


def check_matches_mixture(mixture, x, chunk: int, seed: int):
    """Occupancy within 4 binomial σ and within-component SW ≤ 1.2 × the fresh-vs-fresh floor."""
    assert torch.isfinite(x).all()
    g = torch.Generator().manual_seed(1000 + seed)
    n = len(x)
    # occupancy: argmax assignment of fresh samples estimates the expected occupancy q_k
    q = component_occupancy(mixture, mixture.sample(20000, generator=g)[0])
    occ = component_occupancy(mixture, x)
    tol = 4 * torch.sqrt(q * (1 - q) / n) + 4 * torch.sqrt(q * (1 - q) / 20000)
    assert ((occ - q).abs() <= tol).all(), f"occupancy {occ.tolist()} vs expected {q.tolist()}"
    chunks = n // chunk
    dist = floor = 0.0
    for i in range(chunks):
        ref_a, ref_b = (mixture.sample(chunk, generator=g)[0] for _ in range(2))
        dist += within_component_sw(mixture, x[i * chunk : (i + 1) * chunk], ref_a) ** 2
        floor += within_component_sw(mixture, ref_b, ref_a) ** 2
    ratio = math.sqrt(dist / floor)
    assert ratio < 1.2, f"within-component sliced W2 is {ratio:.2f}× the noise floor"
    return ratio


@pytest.fixture(scope="module")
def data_logp(mixture):
    return data_log_likelihood(mixture, 100_000, seed=5)


def check_gap(mixture, x, reference, bias=0.01):
    """|gap| ≤ bias + 3 SE (SE from the samples themselves)."""
    gap = log_likelihood_gap(mixture, x, reference=reference)
    assert abs(gap.gap) <= bias + 3 * gap.se, f"log-likelihood gap {gap}"
    return gap


def draw(name, sde_name, mixture, n, seed=0, **overrides):
    sde = SDES[sde_name]
    return sample(
        sampler_cfg(name, **overrides),
        GMMScore(mixture, sde),
        sde,
        (n, *SHAPE),
        generator=torch.Generator().manual_seed(seed),
        data_std=mixture.data_std,
    )  # as `sdegen sample` does


# --- distribution tests at default settings -------------------------------------------------------------
# the exact ODE (dopri5 at 1e-5, the slowest of these) on VE and VP-linear in the fast set, on the others in `-m slow`
@pytest.mark.parametrize(
    "name,sde_name",
    [
        pytest.param(n, s, marks=pytest.mark.slow) if n == "ode" and s not in ("ve", "vp-linear") else (n, s)
        for n in FAST
        for s in SDES
    ],
)
def test_fast_samplers_match_mixture(mixture, data_logp, name, sde_name):
    """Defaults: |gap| ≤ 0.01 + 3 SE (n = 8000: SE ≈ 0.003) and the within-component SW check."""
    result = draw(name, sde_name, mixture, 8000, seed=1)
    check_gap(mixture, result.x, data_logp)
    check_matches_mixture(mixture, result.x[:2000], chunk=1000, seed=1)


@pytest.mark.parametrize("sde_name", ["ve", "subvp-linear"])
@pytest.mark.parametrize(
    "name,overrides",
    [
        ("heun", {"s_churn": 10.0, "steps": 60, "grid": "logsnr", "end_noise": 0.002}),
        ("dpm_solver_sde", {}),
        ("restart", {}),
    ],
)
def test_stochastic_fast_samplers_match_mixture(mixture, data_logp, name, overrides, sde_name):
    result = draw(name, sde_name, mixture, 8000, seed=2, **overrides)
    check_gap(mixture, result.x, data_logp)


@pytest.mark.parametrize("sde_name", SDES)
def test_the_10_nfe_recipe_matches_mixture(mixture, data_logp, sde_name):
    """``sampler=dpm_solver sampler.steps=9`` (the step-count preset moves start, end, grid and final step):
    exactly 10 NFE and |gap| ≤ 0.01 + 3 SE on every SDE."""
    result = draw("dpm_solver", sde_name, mixture, 8000, seed=3, steps=9)
    assert result.nfe == 10
    check_gap(mixture, result.x, data_logp)


@pytest.mark.parametrize("sde_name", ["ve", "vp-linear"])
def test_half_step_end_is_the_ddim_step_to_half_the_noise(sde_name):
    """final_denoise(mode="half") on one Gaussian N(μ, s²): x̃ − μ → (x̃ − μ)(1 + r)/2, r = s²/(s² + σ²)
    (σ = σ/α at t, x̃ = x/α), so the spread's variance is s² (1 + ε²/(4(1 + ε))), ε = σ²/s², where
    Tweedie's r gives s²/(1 + ε); and ``sampler.denoise`` takes only true, false or half."""
    from sdegen.errors import UserError
    from sdegen.samplers import denoise_mode, final_denoise

    sde = SDES[sde_name]
    mean, std = 0.3, 0.05
    mixture = GaussianMixture(np.full((1, 1), mean), np.full((1, 1), std), np.ones(1), (1, 1, 1))
    score = GMMScore(mixture, sde)
    t = end_time(sde, {"end_noise": 0.02, "eps": 1e-3})
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = float(sde.alpha(tt)), float(sde.marginal_std(tt) / sde.alpha(tt))
    r = std**2 / (std**2 + sigma**2)
    offsets = torch.tensor([-0.1, 0.0, 0.07], dtype=torch.float64).view(3, 1, 1, 1)
    x = alpha * (mean + offsets)
    half = final_denoise(score, sde, x.float(), t, "half").double()
    tweedie = final_denoise(score, sde, x.float(), t, True).double()
    torch.testing.assert_close(half - mean, offsets * (1 + r) / 2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tweedie - mean, offsets * r, atol=1e-5, rtol=1e-4)
    eps = sigma**2 / std**2
    assert (1 + eps) * ((1 + r) / 2) ** 2 == pytest.approx(1 + eps**2 / (4 * (1 + eps)), rel=1e-12)
    assert denoise_mode("half") == "half" and denoise_mode(False) is False and denoise_mode("true") is True
    with pytest.raises(UserError, match="true, false or half"):
        denoise_mode("quarter")


PRESET_SAMPLERS = ("dpm_solver", "dpm_solver_singlestep", "unipc", "heun")


@pytest.mark.parametrize("name", PRESET_SAMPLERS)
def test_auto_is_the_preset_row_of_the_step_count(name):
    """For steps 1..60 every ``auto`` key takes the value of the first row of the sampler's preset table with
    steps ≤ max_steps (``grid_options`` its grid's, ``data_std`` stays for sampling); every other key is the
    YAML's, and an explicit value always wins (an explicit grid runs with its own default options)."""
    from sdegen.samplers import presets, resolved, split_config

    yaml = sampler_cfg(name)
    rows = presets.table(yaml["_target_"])
    auto = [k for k, v in yaml.items() if v == "auto" and k != "data_std"]
    assert rows and auto and [bound for bound, _ in rows] == sorted(bound for bound, _ in rows)
    assert rows[-1][0] == math.inf and all(k in values for _, values in rows for k in auto)
    for steps in range(1, 61):
        row = [values for bound, values in rows if steps <= bound][0]
        cfg, was_auto = resolved(sampler_cfg(name, steps=steps))
        assert cfg == {**yaml, "steps": steps, **{k: row[k] for k in auto}}, steps
        assert sorted(was_auto) == sorted([*auto, "data_std"] if "data_std" in yaml else auto)
        split_config(cfg)  # a valid config of the sampler
    explicit = {
        "start_noise": 7.0,
        "end_noise": 0.003,
        "grid": "edm",
        "denoise": False,
        "corrector": True,
        "s_churn": 1.5,
        "s_tmin": 0.1,
        "s_tmax": 3.0,
        "s_noise": 1.01,
    }
    for key in auto:
        if key != "grid_options":
            assert resolve_auto(sampler_cfg(name, steps=9, **{key: explicit[key]}))[key] == explicit[key]
    if "grid_options" in auto:
        assert resolve_auto(sampler_cfg(name, steps=19, grid="logsnr"))["grid_options"] == {}
        assert resolve_auto(sampler_cfg(name, steps=19, grid_options={"boost": 1.0}))["grid_options"] == {"boost": 1.0}


def noise_levels(name, steps, sde_name="vp-linear", data_std=0.5, **overrides):
    """σ/α at the grid points the driver builds for ``sampler=<name> sampler.steps=<steps>``, and the result."""
    sde = SDES[sde_name]
    result = sample(
        sampler_cfg(name, steps=steps, **overrides),
        lambda x, t: -x,
        sde,
        (2, 1, 1, 2),
        generator=torch.Generator().manual_seed(0),
        snapshot_every=1,
        data_std=data_std,
    )
    times = torch.tensor(result.times, dtype=torch.float64)
    return torch.exp(-sde.log_snr(times)), result


def test_dpm_solver_presets_do_what_the_docs_say():
    """9 steps: σ/α 10 → 0.02 with the half-step end (10 NFE); 19 steps: 20 → 0.005 with its densest steps at
    σ/α ≈ 4 × the data's std; 40 steps: EDM's 80 → 0.005 in equal log-SNR steps."""
    from sdegen.samplers import final_denoise

    ratio, result = noise_levels("dpm_solver", 9)
    torch.testing.assert_close(ratio[[0, -1]], torch.tensor([10.0, 0.02], dtype=torch.float64), rtol=1e-6, atol=0)
    assert result.nfe == 10
    half, full = (noise_levels("dpm_solver", 9, denoise=mode)[1].x for mode in ("half", True))
    assert torch.equal(result.x, half) and not torch.allclose(result.x, full)
    assert torch.equal(
        half, final_denoise(lambda x, t: -x, SDES["vp-linear"], result.trajectory[-1], result.times[-1], "half")
    )

    data_std = 0.8
    ratio, result = noise_levels("dpm_solver", 19, data_std=data_std)
    torch.testing.assert_close(ratio[[0, -1]], torch.tensor([20.0, 0.005], dtype=torch.float64), rtol=1e-6, atol=0)
    widths = torch.log(ratio[:-1] / ratio[1:])
    narrowest = int(widths.argmin())
    assert float(ratio[narrowest + 1]) <= 4 * data_std <= float(ratio[narrowest]) * 1.5, ratio
    assert result.nfe == 20

    ratio, result = noise_levels("dpm_solver", 40)
    torch.testing.assert_close(ratio[[0, -1]], torch.tensor([80.0, 0.005], dtype=torch.float64), rtol=1e-6, atol=0)
    steps = torch.log(ratio[:-1] / ratio[1:])
    torch.testing.assert_close(steps, steps.mean().expand(40), rtol=1e-6, atol=0)
    # the grid ends at the same σ/α on every SDE (VE's σ(T) = 50 < 80: it starts at T)
    ve, _ = noise_levels("dpm_solver", 40, "ve")
    assert float(ve[0]) == pytest.approx(50.0, rel=1e-3) and float(ve[-1]) == pytest.approx(0.005, rel=1e-6)


def test_unipc_and_singlestep_presets_do_what_the_docs_say():
    """UniPC: σ/α 20 → 0.006 up to 24 steps, 80 → 0.005 from 25, and its corrector UniC runs from 11 steps
    (samples equal those with it forced on / off); singlestep DPM-Solver: equal log-SNR steps at 1–2 steps,
    the focus grid's uneven ones from 3."""
    for steps, start, end in ((5, 20, 0.006), (24, 20, 0.006), (25, 80, 0.005)):
        ratio, _ = noise_levels("unipc", steps)
        torch.testing.assert_close(ratio[[0, -1]], torch.tensor([start, end], dtype=torch.float64), rtol=1e-6, atol=0)
    for steps, corrector in ((10, False), (11, True)):
        chosen = noise_levels("unipc", steps)[1].x
        assert torch.equal(chosen, noise_levels("unipc", steps, corrector=corrector)[1].x)
        assert not torch.equal(chosen, noise_levels("unipc", steps, corrector=not corrector)[1].x)
    for steps, even in ((1, True), (2, True), (3, False), (8, False)):
        ratio, _ = noise_levels("dpm_solver_singlestep", steps)
        widths = torch.log(ratio[:-1] / ratio[1:])
        assert bool(torch.allclose(widths, widths.mean().expand(steps), rtol=1e-6)) == even, (steps, widths)


def test_heun_presets_churn_at_12_to_24_steps():
    """heun: EDM's deterministic Alg. 1 up to 11 and from 25 steps (the same start gives the same samples
    whatever the generator), Alg. 2 with γ = 0.2 per step and S_noise < 1 at 12–24 (they differ)."""
    sde = SDES["vp-linear"]
    x_init = sde.prior_sample((4, 1, 1, 2), generator=torch.Generator().manual_seed(0))
    for steps, stochastic in ((11, False), (12, True), (24, True), (25, False)):
        a, b = (
            sample(
                sampler_cfg("heun", steps=steps),
                lambda x, t: -x,
                sde,
                x_init.shape,
                x_init=x_init.clone(),
                generator=torch.Generator().manual_seed(seed),
            ).x
            for seed in (1, 2)
        )
        assert torch.equal(a, b) != stochastic, steps
        cfg = resolve_auto(sampler_cfg("heun", steps=steps))
        assert cfg["s_churn"] == pytest.approx(0.2 * steps if stochastic else 0.0)
        assert (cfg["s_noise"] < 1) == stochastic and cfg["end_noise"] >= 0.005


def test_resolved_and_the_dry_run_summary_say_what_was_auto():
    from sdegen.samplers import resolved, summary

    cfg, was_auto = resolved(sampler_cfg("dpm_solver", steps=9), data_std=0.8)
    assert cfg["data_std"] == 0.8 and "data_std" in was_auto and "order" not in was_auto
    assert resolved(sampler_cfg("dpm_solver", steps=40), data_std=0.8)[0]["data_std"] == "auto"  # logsnr: unused
    text = summary(sampler_cfg("dpm_solver", steps=9))
    assert text.startswith("sampler dpm_solver: steps=9 ") and "start_noise=10* " in text and "order=3 " in text
    assert "the preset for 9 steps" in text and "data_std=auto: the checkpoint's or the data's" in text
    assert summary(sampler_cfg("dpm_solver", steps=9, start_noise=5.0)).count("start_noise=5 ") == 1
    assert "*" not in summary(sampler_cfg("em")) and "(" not in summary(sampler_cfg("em"))


def test_a_built_sampler_resolves_auto_once_and_runs_every_batch_with_it(monkeypatch):
    """``build`` is where ``auto`` is resolved: the ``Sampler`` it returns samples batch after batch (as
    ``sdegen sample`` does through ``runtime.generation.generate``) without reading the presets again,
    with the values of the preset row for its step count and the focus grid centred on the given data std."""
    import sdegen.samplers as samplers_module
    from sdegen.runtime.generation import generate
    from sdegen.samplers import build, presets

    calls = []
    real = samplers_module.resolve_auto

    def counting(cfg):
        calls.append(1)
        return real(cfg)

    monkeypatch.setattr(samplers_module, "resolve_auto", counting)
    cfg = sampler_cfg("dpm_solver", steps=9)
    sampler = build(cfg, data_std=0.8)
    assert len(calls) == 1
    row = presets.preset(cfg["_target_"], 9)
    auto_keys = [k for k, v in cfg.items() if v == "auto" and k != "data_std"]
    assert auto_keys and all(sampler.config[k] == row[k] for k in auto_keys)
    assert set(auto_keys) <= set(sampler.was_auto) and sampler.data_std == 0.8
    centre = row["grid_options"]["center_std"]
    assert f"focus at σ/α {centre * 0.8:.3g} = {centre:g} × data std 0.8" in sampler.settings()
    assert " data_std=0.8 " in sampler.summary() and "data_std: the checkpoint's or the data's" in sampler.summary()

    sde = standard_sdes()["vp-linear"]
    mixture = GaussianMixture.multiscale(num_components=4, shape=(1, 4, 4))
    setup = type("Setup", (), {"sde": sde, "shape": (1, 4, 4), "device": "cpu"})()
    gen = generate(
        setup,
        GMMScore(mixture, sde),
        sampler,
        9,
        batch_size=3,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert len(calls) == 1 and gen.nfe_per_batch == [10, 10, 10] and torch.isfinite(gen.x).all()


def test_auto_resolves_from_configs_copied_out_of_omegaconf():
    """`dict(cfg.sampler)` (the inpainting task, the training sample grid) keeps nested values as OmegaConf
    nodes: resolving `auto` gives plain data all the same."""
    from sdegen.samplers import plain_config

    node = OmegaConf.create(sampler_cfg("dpm_solver", steps=9))
    expected = resolve_auto(sampler_cfg("dpm_solver", steps=9))
    for cfg in (node, dict(node), plain_config(node)):
        resolved = resolve_auto(cfg)
        assert resolved == expected and type(resolved["grid_options"]) is dict


def test_unipc_without_its_corrector_at_few_steps(mixture, data_logp):
    """At 7 steps (h ≈ 1.1 in λ) UniC over-corrects on exact mixture scores (gap ≈ −0.3 nats/dim here); the
    default drops it up to 10 steps: ≈ +0.03 (docs/samplers.md "`unipc`")."""
    default = draw("unipc", "vp-linear", mixture, 4000, seed=1, steps=7)
    forced = draw("unipc", "vp-linear", mixture, 4000, seed=1, steps=7, options={"corrector": True})
    default_gap = log_likelihood_gap(mixture, default.x, reference=data_logp).gap
    forced_gap = log_likelihood_gap(mixture, forced.x, reference=data_logp).gap
    assert default.nfe == forced.nfe == 8
    assert abs(default_gap) < 0.08 and forced_gap < -0.15, (default_gap, forced_gap)


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("dpm_solver", {"by_steps": [{"max_steps": 12, "start_noise": 10}]}, "sampler.by_steps is not a key"),
        ("em", {"end_noise": "auto"}, "sampler.end_noise=auto: sdegen.samplers.em.sample_em has no step-count preset"),
        ("dpm_solver", {"order": "auto"}, "sampler.order=auto: the preset of .* has no value for it at steps=19"),
        ("dpm_solver", {"steps": "many"}, "sampler.steps must be an integer"),
        ("dpm_solver", {"grid": "karras"}, "not a time grid; choose one of"),
        ("dpm_solver", {"grid": "focus", "grid_options": {"centre": 2.0}}, "grid_options.centre is not an option of"),
        ("dpm_solver", {"grid": "logsnr", "grid_options": {"rho": 7}}, "valid: none"),
        ("dpm_solver", {"grid": "edm", "grid_options": [7]}, "must be a mapping"),
    ],
)
def test_sampler_config_errors_are_one_line(name, change, message):
    from sdegen.errors import UserError
    from sdegen.samplers import split_config

    with pytest.raises(UserError, match=message) as err:
        split_config({**sampler_cfg(name), **change})
    assert len(str(err.value).splitlines()) == 1


def test_heun_alg1_at_35_nfe_is_refused_by_the_gap_check(mixture, data_logp):
    """The documented limit of Alg. 1: EDM's deterministic Heun at 35 NFE (17 log-SNR steps to σ/α = 0.002
    + the final Euler/Tweedie step) leaves gap ≈ −0.05 on this mixture (too few steps where σ/α ~ the
    component stds), refused by the check."""
    result = draw(
        "heun", "vp-linear", mixture, 4000, seed=1, steps=17, end_noise=0.002, grid="logsnr", options={"s_churn": 0.0}
    )
    assert result.nfe == 35
    with pytest.raises(AssertionError, match="log-likelihood gap"):
        check_gap(mixture, result.x, data_logp)


@pytest.mark.parametrize("sde_name", ["ve", "subvp-cosine"])
def test_heun_at_35_nfe_is_alg2_and_accurate(mixture, data_logp, sde_name):
    """`steps=17` alone picks heun's step-count preset: EDM's Alg. 2 with S_noise < 1 on the shifted grid,
    |gap| ≤ 0.005 + 3 SE where the same grid with Alg. 1 (s_churn = 0) is refused (≈ −0.04)."""
    result = draw("heun", sde_name, mixture, 8000, seed=1, steps=17)
    assert result.nfe == 35
    check_gap(mixture, result.x, data_logp, bias=0.005)
    deterministic = draw("heun", sde_name, mixture, 8000, seed=1, steps=17, options={"s_churn": 0.0})
    with pytest.raises(AssertionError, match="log-likelihood gap"):
        check_gap(mixture, deterministic.x, data_logp, bias=0.005)


@pytest.mark.parametrize("steps", [12, 13, 24])
def test_heun_presets_are_accurate(mixture, data_logp, steps):
    """The default (24 steps, 49 NFE) and the two preset rows whose S_noise was scanned on the mixtures (12, 13)
    keep |gap| ≤ 0.005 + 3 SE; the default is Alg. 2 (s_churn > 0)."""
    cfg = sampler_cfg("heun") if steps == 24 else sampler_cfg("heun", steps=steps)
    assert int(cfg["steps"]) == steps and float(resolve_auto(cfg)["s_churn"]) == pytest.approx(0.2 * steps)
    sde = SDES["vp-linear"]
    result = sample(cfg, GMMScore(mixture, sde), sde, (8000, *SHAPE), generator=torch.Generator().manual_seed(1))
    assert result.nfe == 2 * steps + 1
    check_gap(mixture, result.x, data_logp, bias=0.005)


def test_the_gap_check_has_power(mixture, data_logp):
    """DPM-Solver++(2M), 20 steps ending at σ/α = 0.01 without denoising,
    leaves its last noise in the samples: gap ≈ −0.02, which the check refuses."""
    result = draw(
        "dpm_solver",
        "vp-linear",
        mixture,
        8000,
        seed=1,
        steps=20,
        denoise=False,
        end_noise=0.01,
        start_noise=None,
        grid="logsnr",
        options={"algorithm": "dpmsolver++", "order": 2},
    )
    with pytest.raises(AssertionError, match="log-likelihood gap"):
        check_gap(mixture, result.x, data_logp)


@pytest.mark.parametrize("name", ["dpm_solver", "unipc", "heun"])
def test_guided_sampling_matches_the_class_conditional(mixture, name):
    """Exact-posterior classifier guidance: the target is component 2 alone (exact log-density)."""
    from sdegen.guidance.classifier import classifier_guidance

    sde = SDES["subvp-linear"]
    model = GMMScore(mixture, sde)
    guided = classifier_guidance(model, model.class_log_posterior, 2, 1.0)
    target = GaussianMixture(mixture.means[2:3], mixture.stds[2:3], [1.0], mixture.shape)
    x = sample(sampler_cfg(name), guided, sde, (4000, *SHAPE), generator=torch.Generator().manual_seed(3)).x
    check_gap(target, x, data_log_likelihood(target, 50_000, seed=6))


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("name", ["em", "pc"])
def test_sde_samplers_match_mixture(mixture, name, sde_name):
    """1000-step stochastic samplers at their defaults (a few seconds each)."""
    result = draw(name, sde_name, mixture, 600, seed=2)
    check_matches_mixture(mixture, result.x, chunk=600, seed=2)


@pytest.mark.parametrize(
    "predictor,corrector,sde_name",
    [
        ("euler_maruyama", "none", "ve"),
        ("ancestral", "none", "subvp-cosine"),
        ("ancestral", "none", "vp-linear"),
        ("reverse_diffusion", "annealed_langevin", "subvp-linear"),
        ("ancestral", "langevin", "ve"),
    ],
)
def test_pc_variants_match_mixture(mixture, predictor, corrector, sde_name):
    """Every predictor/corrector, including ancestral sampling on sub-VP (no discrete α there)."""
    result = draw(
        "pc", sde_name, mixture, 500, seed=3, steps=300, options={"predictor": predictor, "corrector": corrector}
    )
    check_matches_mixture(mixture, result.x, chunk=500, seed=3)


def test_a_wrong_sampler_fails_the_check(mixture):
    """The check has power: 10 Euler–Maruyama steps without denoising leave visible noise."""
    result = draw("em", "vp-linear", mixture, 1000, steps=10, denoise=False)
    with pytest.raises(AssertionError):
        check_matches_mixture(mixture, result.x, chunk=1000, seed=4)


# --- NFE, hooks, determinism, snapshots -----------------------------------------------------------------
NFE_CASES = [
    ("em", {}, lambda n: n + 1),
    ("pc", {}, lambda n: 2 * n + 1),
    ("pc", {"options": {"corrector_steps": 3}}, lambda n: 4 * n + 1),
    (
        "pc",
        {"options": {"predictor": "none", "corrector": "annealed_langevin", "corrector_steps": 2}},
        lambda n: 2 * n + 1,
    ),
    ("pc", {"options": {"predictor": "ancestral", "corrector": "none"}, "denoise": False}, lambda n: n),
    ("ode", {"options": {"method": "euler"}}, lambda n: n + 1),
    ("ode", {"options": {"method": "heun"}}, lambda n: 2 * n + 1),
    ("ode", {"options": {"method": "rk4"}, "denoise": False}, lambda n: 4 * n),
    ("dpm_solver", {}, lambda n: n + 1),
    ("dpm_solver", {"denoise": False}, lambda n: n),
    ("dpm_solver", {"denoise": True, "options": {"order": 2}}, lambda n: n + 1),
    ("heun", {}, lambda n: 2 * n + 1),
    ("heun", {"options": {"s_churn": 5.0}}, lambda n: 2 * n + 1),
    ("unipc", {}, lambda n: n + 1),  # the corrector's evaluation is the next step's
    ("unipc", {"options": {"corrector": False}, "denoise": False}, lambda n: n),
    ("dpm_solver_singlestep", {}, lambda n: 3 * n + 1),
    ("dpm_solver_singlestep", {"options": {"order": 2}, "denoise": False}, lambda n: 2 * n),
    ("dpm_solver_sde", {}, lambda n: n + 1),
]


@pytest.mark.parametrize("name,overrides,expected", NFE_CASES)
def test_nfe_is_exact_and_hook_runs_every_step(mixture, name, overrides, expected):
    sde = SDES["subvp-linear"]
    model = GMMScore(mixture, sde)
    calls, hooked = [0], []

    def counted(x, t):
        calls[0] += 1
        return model(x, t)

    def hook(x, t):
        hooked.append(float(t))
        return x

    steps = 7
    cfg = sampler_cfg(name, steps=steps, **overrides)
    result = sample(
        cfg, counted, sde, (5, *SHAPE), step_hook=hook, generator=torch.Generator().manual_seed(0), snapshot_every=3
    )
    assert result.nfe == calls[0] == expected(steps)
    resolved = resolve_auto(cfg)
    grid = time_grid(
        sde,
        steps,
        end_time(sde, cfg),
        resolved["grid"],
        start=start_time(sde, cfg),
        **(resolved.get("grid_options") or {}),
    ).tolist()
    assert hooked == grid[1:] + ([0.0] if cfg["denoise"] else [])
    assert len(result.trajectory) == len(result.times) == 1 + 3  # noise, steps 3, 6, 7
    assert result.times == [grid[0], grid[3], grid[6], grid[7]]
    torch.testing.assert_close(result.trajectory[-1], result.x)


def test_dopri5_counts_every_call_and_hooks_between_grid_points(mixture):
    sde = SDES["vp-cosine"]
    model = GMMScore(mixture, sde)
    calls = [0]

    def counted(x, t):
        calls[0] += 1
        return model(x, t)

    result = sample(sampler_cfg("ode", steps=4), counted, sde, (50, *SHAPE), generator=torch.Generator().manual_seed(0))
    assert result.nfe == calls[0] > 20
    hooked = []
    calls[0] = 0
    result = sample(
        sampler_cfg("ode", steps=4),
        counted,
        sde,
        (50, *SHAPE),
        generator=torch.Generator().manual_seed(0),
        step_hook=lambda x, t: hooked.append(float(t)) or x,
    )
    assert result.nfe == calls[0] and len(hooked) == 5


def test_step_hook_changes_the_state(mixture):
    """A hook that pins coordinate 0 to 0.25 after every step: the sample keeps it."""
    sde = SDES["vp-linear"]

    def pin(x, t):
        x = x.clone()
        x[:, 0, 0, 0] = 0.25
        return x

    for name in SAMPLERS:
        result = sample(
            sampler_cfg(name, steps=10),
            GMMScore(mixture, sde),
            sde,
            (8, *SHAPE),
            step_hook=pin,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.all(result.x[:, 0, 0, 0] == 0.25), name


@pytest.mark.parametrize("name", SAMPLERS)
def test_deterministic_for_a_seed(mixture, name):
    sde = SDES["ve"]

    def run(seed):
        return sample(
            sampler_cfg(name, steps=12),
            GMMScore(mixture, sde),
            sde,
            (16, *SHAPE),
            generator=torch.Generator().manual_seed(seed),
        ).x

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_unknown_options_are_clear_errors(mixture):
    sde = SDES["vp-linear"]
    for name, options in (
        ("pc", {"predictor": "leapfrog"}),
        ("pc", {"corrector": "hmc"}),
        ("ode", {"method": "rk45"}),
        ("dpm_solver", {"order": 4}),
        ("dpm_solver", {"algorithm": "unipc"}),
        ("unipc", {"variant": "bh3"}),
        ("unipc", {"order": 4}),
        ("unipc", {"corrector": "sometimes"}),
        ("dpm_solver_singlestep", {"order": 4}),
        ("dpm_solver_sde", {"order": 3}),
    ):
        with pytest.raises(ValueError):
            sample(sampler_cfg(name, steps=3, options=options), GMMScore(mixture, sde), sde, (2, *SHAPE))


@pytest.mark.parametrize("name", SAMPLERS)
def test_config_typos_and_bad_ranges_are_user_errors(mixture, name):
    """A mistyped option, steps < 1, resample < 1 or eps outside (0, T) is refused before any step."""
    from sdegen.errors import UserError

    sde, score = SDES["vp-linear"], GMMScore(mixture, SDES["vp-linear"])
    with pytest.raises(UserError, match="stepz is not an option"):
        sample(sampler_cfg(name, stepz=3), score, sde, (2, *SHAPE))
    with pytest.raises(UserError, match="steps must be >= 1"):
        sample(sampler_cfg(name, steps=0), score, sde, (2, *SHAPE))
    with pytest.raises(UserError, match="resample must be >= 1"):
        sample(sampler_cfg(name, steps=2, resample=0), score, sde, (2, *SHAPE))
    with pytest.raises(UserError, match="0 < eps < T"):
        sample(sampler_cfg(name, steps=2, eps=1.5, end_noise=None), score, sde, (2, *SHAPE))


# --- grids --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("kind", ["uniform", "logsnr", "edm", "shifted", "focus"])
def test_grids_are_monotone_and_hit_both_ends(sde_name, kind):
    sde = SDES[sde_name]
    grid = time_grid(sde, 25, 1e-3, kind)
    assert len(grid) == 26 and grid[0] == sde.T and grid[-1] == 1e-3
    assert (grid[1:] < grid[:-1]).all()
    lam = sde.log_snr(grid)
    if kind == "logsnr":  # equal log-SNR increments
        torch.testing.assert_close(lam.diff(), lam.diff().mean().expand(25), rtol=1e-6, atol=1e-6)
    if kind == "edm":  # (σ/α)^{1/7} equally spaced
        r = torch.exp(-lam) ** (1 / 7)
        torch.testing.assert_close(r.diff(), r.diff().mean().expand(25), rtol=1e-6, atol=1e-6)
    if kind == "shifted":  # (σ/α + 0.1)^{−1/3} equally spaced
        r = (torch.exp(-lam) + 0.1) ** (-1 / 3)
        torch.testing.assert_close(r.diff(), r.diff().mean().expand(25), rtol=1e-6, atol=1e-6)
    if kind == "focus":  # equal mass of the density 1 + 1.5 exp(−(λ + log 2)²/(2 · 0.5²)) per step (trapezoid rule)
        fine = torch.linspace(float(lam[0]), float(lam[-1]), 200_001, dtype=torch.float64)
        density = 1 + 1.5 * torch.exp(-((fine + math.log(2.0)) ** 2) / (2 * 0.5**2))
        mass = torch.cat(
            [torch.zeros(1, dtype=torch.float64), torch.cumsum((density[1:] + density[:-1]) / 2 * fine.diff(), 0)]
        )
        at_nodes = torch.from_numpy(np.interp(lam.numpy(), fine.numpy(), mass.numpy()))
        torch.testing.assert_close(at_nodes.diff(), at_nodes.diff().mean().expand(25), rtol=1e-5, atol=1e-5)
        # the steps are shortest in λ at σ/α = 2 and as long as the log-SNR grid's far from it
        steps = lam.diff()
        assert float(torch.exp(-lam[int(steps.argmin())])) == pytest.approx(2.0, rel=0.4)


def test_focus_grid_without_boost_is_the_logsnr_grid():
    from sdegen.errors import UserError

    sde = SDES["vp-linear"]
    torch.testing.assert_close(
        focus_grid(sde, 19, 1e-3, start=0.8, boost=0.0),
        time_grid(sde, 19, 1e-3, "logsnr", start=0.8),
        rtol=0,
        atol=1e-12,
    )
    for bad in ({"boost": -0.5}, {"width": 0.0}, {"center": -1.0}, {"center_std": 0.0}, {"data_std": -0.5}):
        with pytest.raises(UserError, match="focus grid needs"):
            focus_grid(sde, 19, 1e-3, **bad)


def test_the_focus_centre_follows_the_data_std():
    """The bump sits at σ/α = center_std × data_std unless ``center`` pins it; the driver passes the data's
    std (``sample(data_std=...)``, overridden by ``sampler.data_std``) and EDM's 0.5 when nobody knows it."""
    from sdegen.errors import UserError
    from sdegen.samplers import data_scale, needs_data_std, settings

    sde = SDES["vp-linear"]
    for data_std in (0.25, 0.5, 1.1):
        torch.testing.assert_close(
            focus_grid(sde, 19, 1e-3, start=0.8, center_std=4.0, data_std=data_std),
            focus_grid(sde, 19, 1e-3, start=0.8, center=4.0 * data_std),
            rtol=0,
            atol=0,
        )
    pinned = focus_grid(sde, 19, 1e-3, start=0.8, center=2.0, data_std=3.0)
    torch.testing.assert_close(pinned, focus_grid(sde, 19, 1e-3, start=0.8, center=2.0), rtol=0, atol=0)
    # the grid's step density peaks at the centre: the narrowest log-SNR step is next to σ/α = 4 × 1.1
    ratio = torch.exp(-sde.log_snr(focus_grid(sde, 19, 1e-3, start=0.8, data_std=1.1)))
    widths = torch.log(ratio[:-1] / ratio[1:])
    narrowest = int(widths.argmin())
    assert float(ratio[narrowest + 1]) <= 4.4 <= float(ratio[narrowest]) * 1.5, ratio

    cfg = sampler_cfg("dpm_solver")
    assert needs_data_std(cfg) and not needs_data_std(sampler_cfg("dpm_solver", data_std=0.7))
    assert not needs_data_std(sampler_cfg("dpm_solver", grid_options={"center": 2.0}))
    assert not needs_data_std(sampler_cfg("dpm_solver", steps=40)) and not needs_data_std(sampler_cfg("unipc"))
    assert data_scale(cfg, 0.8) == (0.8, "the checkpoint's or the data's")
    assert data_scale(cfg, None) == (0.5, "not known: EDM's default")
    assert data_scale(sampler_cfg("dpm_solver", data_std=0.7), 0.8) == (0.7, "sampler.data_std")
    assert "focus at σ/α 3.2 = 4 × data std 0.8" in settings(cfg, 0.8)

    def grid_of(**kw):  # the time grid the driver built, read off the trajectory's times
        hook_times = []
        sample(
            sampler_cfg("dpm_solver", **kw.pop("over", {})),
            lambda x, t: -x,
            sde,
            (2, 1, 1, 2),
            step_hook=lambda x, t: hook_times.append(float(t)) or x,
            **kw,
        )
        return hook_times

    assert grid_of(data_std=1.0) != grid_of(data_std=0.5) == grid_of()
    assert grid_of(data_std=1.0, over={"data_std": 0.5}) == grid_of()
    for bad in (0.0, -1.0, "large", True):
        with pytest.raises(UserError, match="data_std must be auto or a number"):
            sample(sampler_cfg("dpm_solver", data_std=bad), lambda x, t: -x, sde, (2, 1, 1, 2))
    with pytest.raises(UserError, match="not a grid option"):
        sample(sampler_cfg("dpm_solver", grid_options={"data_std": 1.0}), lambda x, t: -x, sde, (2, 1, 1, 2))


def test_the_focus_centre_following_the_data_removes_the_other_scales_over_dispersion():
    """docs/samplers.md "The focus grid": on a 16-d mixture whose means are spread
    twice as far as the test bed's (data std 1.15), the focus centre fixed at σ/α = 2 over-disperses the 20-NFE
    default by ≈ −0.007 nats/dim against the exact ODE from the same prior draws; at 4 × the data's std
    (σ/α 4.6) it leaves ≈ −0.001 (paired gain +0.006 ± 0.0005 at n = 2,000)."""
    sde = SDES["vp-linear"]
    base = GaussianMixture.multiscale(num_components=7, shape=(1, 4, 4), std_min=0.027, std_max=0.426, seed=3000)
    wide = GaussianMixture(base.means * 2, base.stds, base.weights, base.shape)
    model = GMMScore(wide, sde)
    x_prior = sde.prior_sample((2000, 1, 4, 4), generator=torch.Generator().manual_seed(1))

    def logp(cfg):
        with torch.no_grad():
            x = sample(cfg, model, sde, x_prior.shape, x_init=x_prior.clone(), data_std=wide.data_std).x
        return wide.log_prob(x.reshape(len(x), -1).double()) / wide.dim

    exact = logp(sampler_cfg("ode", start_noise=80, end_noise=1e-4, options={"rtol": 1e-6, "atol": 1e-6}))
    follows = logp(sampler_cfg("dpm_solver")) - exact
    pinned = {"center": 2.0, "boost": 1.5, "width": 0.5}
    fixed = logp(sampler_cfg("dpm_solver", grid="focus", grid_options=pinned)) - exact
    gain = follows - fixed
    assert 1.1 < wide.data_std < 1.2
    assert float(gain.mean()) > 6 * float(gain.std()) / len(gain) ** 0.5, gain.mean()
    assert abs(float(follows.mean())) < 0.003 < 0.005 < abs(float(fixed.mean())), (follows.mean(), fixed.mean())


# --- closed forms on a single Gaussian ----------------------------------------------------------------------
MEAN = torch.tensor([0.7, -0.4], dtype=torch.float64)
STD = torch.tensor([0.05, 0.6], dtype=torch.float64)


def gaussian():
    return GaussianMixture(MEAN[None], STD[None], [1.0], (1, 1, 2))


def pf_ode_solution(sde, x_T, T, t):
    """x_t = α_t μ + sqrt(α_t² s² + σ_t²)/sqrt(α_T² s² + σ_T²) (x_T − α_T μ) (per dimension)."""
    T, t = torch.tensor(T, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)

    def spread(u):
        return torch.sqrt(sde.alpha(u) ** 2 * STD**2 + sde.marginal_std(u) ** 2)

    flat = x_T.reshape(len(x_T), -1)
    return (sde.alpha(t) * MEAN + spread(t) / spread(T) * (flat - sde.alpha(T) * MEAN)).reshape(x_T.shape)


@pytest.mark.parametrize("sde_name", ["ve", "vp-linear", "subvp-cosine"])
def test_dpm_solver_order1_is_the_ddim_step(sde_name):
    """DPM-Solver-1 = DPM-Solver++-1 = DDIM: x_t = α_t/α_s x_s − σ_t (e^h − 1) ε̂(x_s, s)."""
    sde = SDES[sde_name]
    model = GMMScore(gaussian(), sde)
    x = torch.randn(6, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sde.prior_std
    s, t = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    eps_hat = -sde.marginal_std(s) * model(x, s.expand(6))
    h = sde.log_snr(t) - sde.log_snr(s)
    expected = sde.alpha(t) / sde.alpha(s) * x - sde.marginal_std(t) * torch.expm1(h) * eps_hat
    from sdegen.samplers.dpm_solver import sample_dpm_solver

    for algorithm in ("dpmsolver", "dpmsolver++"):
        out = sample_dpm_solver(model, sde, x, torch.stack([s, t]), order=1, algorithm=algorithm, denoise=False).x
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


ORDER_CASES = [  # (sampler, overrides, sde, steps, expected order)
    ("ode", {"options": {"method": "euler"}}, "vp-linear", 200, 1),
    ("ode", {"options": {"method": "heun"}}, "vp-linear", 100, 2),
    ("ode", {"options": {"method": "rk4"}}, "vp-linear", 50, 4),
    # dpm_solver's grid is `auto` (the preset: focus at 13–24 steps, logsnr from 25): fixed here so that both
    # step counts refine the same grid family
    ("dpm_solver", {"grid": "logsnr", "options": {"order": 1}}, "subvp-linear", 20, 1),
    ("dpm_solver", {"grid": "logsnr", "options": {"order": 2, "algorithm": "dpmsolver"}}, "vp-cosine", 20, 2),
    ("dpm_solver", {"grid": "logsnr", "options": {"order": 2}}, "ve", 20, 2),
    ("dpm_solver", {"grid": "focus", "options": {"order": 2}}, "ve", 20, 2),
    # multistep order 3 starts with an order-1 and an order-2 step: globally O(h²) (local order below)
    ("dpm_solver", {"grid": "logsnr", "options": {"order": 3, "algorithm": "dpmsolver++"}}, "vp-linear", 20, 2),
    ("dpm_solver", {"grid": "focus", "options": {"order": 3, "algorithm": "dpmsolver"}}, "subvp-cosine", 20, 2),
    # 20 steps picks Alg. 2 (the preset): the order is Alg. 1's
    ("heun", {"options": {"s_churn": 0.0}}, "vp-linear", 10, 2),
    ("heun", {"options": {"s_churn": 0.0}}, "ve", 10, 2),
    # UniC raises the order of the predictor by one (Zhao et al. 2023, Thm. 3.3)
    ("unipc", {"options": {"order": 1, "corrector": True}}, "vp-linear", 10, 2),
    ("unipc", {"options": {"order": 1, "corrector": False}}, "vp-linear", 10, 1),
    (
        "unipc",
        {
            "options": {
                "order": 2,
                "variant": "bh1",
                "algorithm": "dpmsolver++",
                "lower_order_final": False,
                "corrector": True,
            }
        },
        "vp-linear",
        20,
        3,
    ),
    (
        "unipc",
        {"options": {"order": 2, "algorithm": "dpmsolver", "lower_order_final": False, "corrector": True}},
        "ve",
        20,
        3,
    ),
    ("dpm_solver_singlestep", {"options": {"order": 2}}, "vp-linear", 10, 2),
    ("dpm_solver_singlestep", {"options": {"order": 3, "algorithm": "dpmsolver"}}, "vp-linear", 10, 3),
    ("dpm_solver_singlestep", {"options": {"order": 3, "algorithm": "dpmsolver"}}, "subvp-cosine", 10, 3),
]


@pytest.mark.parametrize("name,overrides,sde_name,steps,order", ORDER_CASES)
def test_ode_solvers_converge_at_their_order(name, overrides, sde_name, steps, order):
    """Error against the analytic PF-ODE solution falls like steps^(−order) when steps double."""
    sde = SDES[sde_name]
    model = GMMScore(gaussian(), sde)
    x_T = torch.randn(64, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sde.prior_std
    errors = []
    for n in (steps, 2 * steps):
        cfg = sampler_cfg(name, steps=n, denoise=False, eps=0.01, end_noise=None, start_noise=None, **overrides)
        x = sample(cfg, model, sde, x_T.shape, x_init=x_T.clone()).x
        errors.append(float((x - pf_ode_solution(sde, x_T, sde.T, 0.01)).abs().max()))
    observed = math.log2(errors[0] / errors[1])
    assert observed > order - 0.35, f"observed order {observed:.2f} (errors {errors})"


@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_dpm_solver_update_local_order(order, algorithm):
    """One k-th order multistep update from exact states/outputs: local error O(h^{k+1})."""
    from sdegen.samplers.dpm_solver import _coefficients, dpm_solver_update

    sde = SDES["vp-linear"]
    model = GMMScore(gaussian(), sde)
    x_T = torch.randn(64, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sde.prior_std
    lam0 = float(sde.log_snr(torch.tensor(0.5, dtype=torch.float64)))
    errors = []
    for h in (0.1, 0.05, 0.025):
        ts = [float(sde.t_from_log_snr(torch.tensor(lam0 + k * h, dtype=torch.float64))) for k in range(order + 1)]
        xs = [pf_ode_solution(sde, x_T, sde.T, t) for t in ts]
        coefs = [_coefficients(sde, t) for t in ts]
        outputs = []
        for t, x, (alpha, std, _) in zip(ts, xs, coefs[:-1]):
            grad = model(x, torch.full((64,), t, dtype=torch.float64))
            outputs.append((x + std**2 * grad) / alpha if algorithm == "dpmsolver++" else -std * grad)
        x_next = dpm_solver_update(xs[-2], outputs, [c[2] for c in coefs], coefs[-1], coefs[-2], algorithm)
        errors.append(float((x_next - xs[-1]).abs().max()))
    observed = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert min(observed) > order + 1 - 0.3, f"local orders {observed}"


def test_dopri5_matches_the_analytic_solution():
    sde = SDES["subvp-cosine"]
    model = GMMScore(gaussian(), sde)
    x_T = torch.randn(64, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sde.prior_std
    cfg = sampler_cfg("ode", denoise=False, eps=0.01, end_noise=None, start_noise=None)
    x = sample(cfg, model, sde, x_T.shape, x_init=x_T.clone()).x
    torch.testing.assert_close(x, pf_ode_solution(sde, x_T, sde.T, 0.01), rtol=0, atol=2e-4)


def test_counting_score_broadcasts_scalar_time(mixture):
    sde = SDES["vp-linear"]
    score = CountingScore(GMMScore(mixture, sde))
    x = torch.randn(3, *SHAPE)
    torch.testing.assert_close(score(x, torch.tensor(0.3)), GMMScore(mixture, sde)(x, torch.full((3,), 0.3)))
    assert score.nfe == 1


@pytest.mark.parametrize("sde_name", ["ve", "vp-linear", "subvp-cosine"])
def test_end_noise_sets_the_final_noise_to_signal_ratio(sde_name):
    from sdegen.samplers import end_time

    sde = SDES[sde_name]
    t_end = end_time(sde, {"end_noise": 0.005, "eps": 0.5})
    ratio = torch.exp(-sde.log_snr(torch.tensor(t_end, dtype=torch.float64)))
    assert float(ratio) == pytest.approx(0.005, rel=1e-6)
    assert end_time(sde, {"eps": 0.25}) == 0.25
    with pytest.raises(ValueError, match="end_noise"):
        end_time(sde, {"end_noise": 0.0})


# --- EDM's σ_max cap, the gap metric, the Langevin step ---------------------------------------------------
@pytest.mark.parametrize("sde_name", ["vp-linear", "subvp-cosine", "ve"])
def test_start_noise_caps_the_initial_noise_to_signal_ratio(sde_name):
    """start_noise = 80: the grid starts where σ/α = 80 (or at T when σ(T)/α(T) is smaller, VE's 50)
    and the prior draw is rescaled to N(0, σ(t_start)²)."""
    from sdegen.samplers import start_time

    sde = SDES[sde_name]
    seen = {}

    def spy(score_fn, sde, x, timesteps, **kwargs):
        seen["x"], seen["t"] = x, timesteps
        return type("R", (), {"x": x, "nfe": 0})()

    sample(
        {"_target_": spy, "steps": 4, "start_noise": 80.0, "end_noise": 0.002, "grid": "edm"},
        None,
        sde,
        (20000, 2),
        generator=torch.Generator().manual_seed(0),
    )
    t0 = float(seen["t"][0])
    ratio = float(torch.exp(-sde.log_snr(torch.tensor(t0, dtype=torch.float64))))
    top = float(torch.exp(-sde.log_snr(torch.tensor(sde.T, dtype=torch.float64))))
    assert ratio == pytest.approx(min(80.0, top), rel=1e-6)
    assert t0 == pytest.approx(start_time(sde, {"start_noise": 80.0}))
    std = float(sde.marginal_std(torch.tensor(t0, dtype=torch.float64)))
    assert float(seen["x"].std()) == pytest.approx(std, rel=0.02)


def test_gap_of_exact_and_of_overdispersed_samples():
    """Exact samples: gap within 4 SE of 0.  Every deviation scaled by c: gap = −(c² − 1)/2 (one Gaussian)."""
    mix = gaussian()
    reference = data_log_likelihood(mix, 200_000, seed=1)
    x, _ = mix.sample(20000, generator=torch.Generator().manual_seed(2))
    exact = log_likelihood_gap(mix, x, reference=reference)
    assert abs(exact.gap) < 4 * exact.se and 0 < exact.se < 0.01
    wide = MEAN.reshape(1, 1, 1, 2).float() + 1.1 * (x - MEAN.reshape(1, 1, 1, 2).float())
    gap = log_likelihood_gap(mix, wide, reference=reference)
    assert gap.gap == pytest.approx(-(1.1**2 - 1) / 2, abs=4 * gap.se + 1e-3)
    assert log_likelihood_gap(mix, torch.full_like(x, float("nan")), reference=reference).gap == float("-inf")


def test_langevin_step_has_the_alpha_factor():
    """Song et al. 2021, Alg. 5: ε = 2 α_i (r ‖z‖/‖s‖)², α_i = (α_t/α_s)² (VP's 1 − β_i)."""
    from sdegen.samplers.pc import langevin_corrector

    sde = SDES["vp-linear"]
    x = torch.randn(8, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grad = -x  # a score with ‖s‖ = ‖x‖
    t, s = torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    out = langevin_corrector(lambda x, t: -x, sde, x, t, s, 0.16, torch.Generator().manual_seed(1))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a2 = float(torch.exp(2 * (sde.log_alpha(t) - sde.log_alpha(s))))
    eps = 2 * a2 * (0.16 * noise.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean()) ** 2
    torch.testing.assert_close(out, x + eps * grad + (2 * eps).sqrt() * noise)
    assert a2 < 0.9  # the factor matters at this step size


def test_the_focus_grid_removes_the_mode_commitment_error():
    """The 20-NFE default's focus grid (docs/samplers.md "The focus grid"): on a 16-d mixture of 8 overlapping
    components the log-SNR grid (20 → 0.006) over-disperses by ≈ −0.006 nats/dim
    against the exact ODE from the same prior draws; the focus grid leaves ≈ −0.001.  Per sample the error
    is heavy-tailed (SE ≈ 0.0012 at n = 4,000), the paired difference of the two grids much less so (≈ 0.0007)."""
    sde = SDES["vp-linear"]
    hard = GaussianMixture.multiscale(num_components=8, shape=(1, 4, 4), std_min=0.02, std_max=0.5, seed=201)
    model = GMMScore(hard, sde)
    x_prior = sde.prior_sample((4000, 1, 4, 4), generator=torch.Generator().manual_seed(1))

    def logp(cfg):
        with torch.no_grad():
            x = sample(cfg, model, sde, x_prior.shape, x_init=x_prior.clone()).x
        return hard.log_prob(x.reshape(len(x), -1).double()) / hard.dim

    exact = logp(sampler_cfg("ode", start_noise=80, end_noise=1e-4, options={"rtol": 1e-6, "atol": 1e-6}))
    focus = logp(sampler_cfg("dpm_solver")) - exact
    logsnr = logp(sampler_cfg("dpm_solver", grid="logsnr", end_noise=0.006)) - exact
    gain = focus - logsnr
    assert float(gain.mean()) > 4 * float(gain.std()) / len(gain) ** 0.5  # the focus grid is better: ≈ 0.004
    assert abs(float(focus.mean())) < 0.005 < abs(float(logsnr.mean())), (focus.mean(), logsnr.mean())
