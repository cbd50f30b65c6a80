"""The ``loss`` group: each loss's value on the exact score against its closed form, the exact score as its
minimiser, the noise-level distributions, the YAMLs against the code, and stored configs read as the group."""

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from sdegen.errors import UserError
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.sde import VESDE, VPSDE, CosineSchedule, GeometricSigma, LinearSchedule, SubVPSDE
from sdegen.training.losses import (
    LOSS_KEYS,
    LOSSES,
    DSMLoss,
    EDMLoss,
    LikelihoodISLoss,
    LikelihoodLoss,
    build_loss,
    dsm_per_sample,
    loss_config,
)

LOSS_DIR = Path(__file__).resolve().parents[1] / "configs" / "loss"
SDES = {
    "vp": lambda: VPSDE(LinearSchedule(0.1, 20.0)),
    "subvp": lambda: SubVPSDE(CosineSchedule()),
    "ve": lambda: VESDE(GeometricSigma(0.01, 50.0)),
}


def f64(v):
    return torch.tensor(v, dtype=torch.float64)


def single_gaussian(mean=0.3, std=0.5, dim=4):
    return GaussianMixture(torch.full((1, dim), mean), torch.full((1, dim), std), torch.ones(1), (1, 2, dim // 2))


def monte_carlo(loss, s, n=100_000, seed=1):
    """(mean, standard error) of ``loss`` on the exact score of N(0.3, s²) data."""
    mixture = single_gaussian(std=s)
    score = GMMScore(mixture, loss.sde)
    x0, _ = mixture.sample(n, generator=torch.Generator().manual_seed(seed))
    value, per_sample, _ = loss(score, x0.double(), generator=torch.Generator().manual_seed(seed + 1))
    return value.item(), per_sample.std().item() / math.sqrt(n)


def per_time(sde, t, s):
    """Per-dimension ‖σ s* + ε‖² of the exact score of N(μ, s²) data at time t: α²s²/(α²s² + σ²)."""
    a2s2 = sde.alpha(t) ** 2 * s**2
    return a2s2 / (a2s2 + sde.marginal_std(t) ** 2)


@pytest.mark.parametrize("name", list(SDES))
def test_sigma2_loss_of_the_exact_score_is_its_closed_form(name):
    """loss=sigma2: t ~ U(eps, T), so the loss is the time average of α²s²/(α²s² + σ²); at a fixed t it is
    that value."""
    sde, s = SDES[name](), 0.5
    loss = DSMLoss(sde)
    value, stderr = monte_carlo(loss, s)
    ts = torch.linspace(sde.eps, sde.T, 200_001, dtype=torch.float64)
    expected = torch.trapezoid(per_time(sde, ts, s), ts).item() / (sde.T - sde.eps)
    assert abs(value - expected) < 4 * stderr + 1e-4, (value, expected)
    mixture = single_gaussian(std=s)
    x0 = mixture.sample(100_000, generator=torch.Generator().manual_seed(3))[0].double()
    t = torch.full((x0.shape[0],), 0.3, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fixed = loss.per_sample(GMMScore(mixture, sde), x0, t, noise).mean().item()
    assert fixed == pytest.approx(per_time(sde, f64(0.3), s).item(), abs=5e-3)


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("cls", [LikelihoodLoss, LikelihoodISLoss])
def test_likelihood_losses_of_the_exact_score_are_their_closed_form(name, cls):
    """loss=likelihood and likelihood_is (same expectation): g²/σ² dt = −2 dλ with λ = log(α/σ) and
    α²s²/(α²s² + σ²) = s²e^{2λ}/(1 + s²e^{2λ}), so (T − eps)·L = ln(1 + s²e^{2λ(eps)}) − ln(1 + s²e^{2λ(T)})."""
    sde, s = SDES[name](), 0.5
    loss = cls(sde)
    value, stderr = monte_carlo(loss, s)
    lam_eps, lam_T = sde.log_snr(f64(sde.eps)).item(), sde.log_snr(f64(sde.T)).item()
    expected = (math.log1p(s**2 * math.exp(2 * lam_eps)) - math.log1p(s**2 * math.exp(2 * lam_T))) / (sde.T - sde.eps)
    assert abs(value - expected) < 4 * stderr + 2e-3 * expected, (value, expected)


@pytest.mark.parametrize("name", list(SDES))
def test_edm_loss_of_the_exact_score_is_one_when_data_std_is_the_data_scale(name):
    """loss=edm: the weight (σ̃² + σ_d²)/σ_d² times s²/(s² + σ̃²) is 1 at every noise level when σ_d = s, so the
    loss of the exact score is 1 for every SDE (its noise levels do not depend on the SDE); with σ_d ≠ s it
    is E[(σ̃² + σ_d²)/σ_d² · s²/(s² + σ̃²)] over ln σ̃ ~ N(p_mean, p_std²), clamped to the SDE's range."""
    sde, s = SDES[name](), 0.5
    value, stderr = monte_carlo(EDMLoss(sde, data_std=s), s)
    assert abs(value - 1.0) < 4 * stderr + 1e-4
    loss = EDMLoss(sde, data_std=1.0, p_mean=-1.2, p_std=1.2)
    value, stderr = monte_carlo(loss, s)
    lo, hi = (math.log(sde.marginal_std(f64(v)).item() / sde.alpha(f64(v)).item()) for v in (sde.eps, sde.T))
    z = torch.linspace(-9, 9, 200_001, dtype=torch.float64)
    sigma_tilde = torch.exp((-1.2 + 1.2 * z).clamp(lo, hi))
    integrand = (sigma_tilde**2 + 1) * s**2 / (s**2 + sigma_tilde**2) * torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    expected = torch.trapezoid(integrand, z).item()
    assert abs(value - expected) < 4 * stderr + 1e-3 * expected, (value, expected)


@pytest.mark.parametrize("name", list(SDES))
def test_noise_level_distributions(name):
    """sigma2/likelihood: t ~ U(eps, T); likelihood_is: λ = log(α/σ) uniform on [λ(T), λ(eps)];
    edm: ln(σ/α) ~ N(p_mean, p_std²) inside the SDE's range (Kolmogorov-Smirnov-style checks on the CDFs)."""
    sde, n = SDES[name](), 200_000
    g = torch.Generator().manual_seed(0)
    for cls in (DSMLoss, LikelihoodLoss):
        t = cls(sde).sample_t(n, generator=g).double()
        assert t.min() >= sde.eps - 1e-7 and t.max() <= sde.T + 1e-6
        for q in (0.25, 0.5, 0.75):
            assert (t <= sde.eps + q * (sde.T - sde.eps)).double().mean().item() == pytest.approx(q, abs=0.005)
    lam = sde.log_snr(LikelihoodISLoss(sde).sample_t(n, generator=g).double())
    lam_eps, lam_T = sde.log_snr(f64(sde.eps)).item(), sde.log_snr(f64(sde.T)).item()
    for q in (0.25, 0.5, 0.75):
        assert (lam <= lam_T + q * (lam_eps - lam_T)).double().mean().item() == pytest.approx(q, abs=0.01)
    t = EDMLoss(sde).sample_t(n, generator=g).double()
    log_sigma_tilde = torch.log(sde.marginal_std(t) / sde.alpha(t))
    lo, hi = (math.log(sde.marginal_std(f64(v)).item() / sde.alpha(f64(v)).item()) for v in (sde.eps, sde.T))
    for q in (-2.5, -1.2, 0.0):
        if lo < q < hi:
            expected = 0.5 * (1 + math.erf((q + 1.2) / (1.2 * math.sqrt(2))))
            assert (log_sigma_tilde <= q).double().mean().item() == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_the_exact_score_minimises_every_loss(name, loss_name):
    """On the multiscale mixture, with common random numbers: scaling or shifting the exact score raises
    each loss; its sigma2 loss equals 1 − σ² E‖s*(x_t)‖² per dimension (Tweedie: E[ε | x_t] = −σ s*)."""
    sde = SDES[name]()
    loss = LOSSES[loss_name](sde)
    mixture = GaussianMixture.multiscale(4, (1, 4, 4), 0.03, 0.5, seed=0)
    score = GMMScore(mixture, sde)
    n = 10_000
    g = torch.Generator().manual_seed(0)
    x0 = mixture.sample(n, generator=g)[0].double()
    t = loss.sample_t(n, generator=g).double()
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = loss.per_sample(score, x0, t, noise).mean()
    direction = torch.randn(x0.shape[1:], generator=g, dtype=torch.float64)
    for delta in (0.05, 0.2):

        def shifted(x, tt, delta=delta):
            return score(x, tt) + delta * direction / sde.marginal_std(tt).reshape(-1, 1, 1, 1)

        assert loss.per_sample(shifted, x0, t, noise).mean() > exact
    for scale in (0.95, 1.05):
        assert loss.per_sample(lambda x, tt, c=scale: c * score(x, tt), x0, t, noise).mean() > exact
    if loss_name == "sigma2":
        xt = sde.perturb(x0, t, noise)
        tweedie = 1 - (sde.marginal_std(t).reshape(-1, 1, 1, 1) * score(xt, t)).flatten(1).pow(2).mean(1)
        diff = loss.per_sample(score, x0, t, noise) - tweedie
        assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(n)


def test_importance_sampling_reduces_variance_and_reduction_sums():
    sde = VPSDE(LinearSchedule(0.1, 20.0))
    mixture = single_gaussian()
    score = GMMScore(mixture, sde)
    x0 = mixture.sample(20_000, generator=torch.Generator().manual_seed(0))[0].double()
    _, plain, _ = LikelihoodLoss(sde)(score, x0, generator=torch.Generator().manual_seed(1))
    _, weighted, _ = LikelihoodISLoss(sde)(score, x0, generator=torch.Generator().manual_seed(1))
    assert weighted.std() < 0.2 * plain.std()
    # Z = ∫ g²/σ² dt = 2 (λ(eps) − λ(T)), checked by quadrature
    ts = torch.logspace(math.log10(sde.eps), 0, 400_001, dtype=torch.float64)
    Z = torch.trapezoid(sde.diffusion(ts) ** 2 / sde.marginal_std(ts) ** 2, ts).item()
    assert LikelihoodISLoss(sde).is_weight * (sde.T - sde.eps) == pytest.approx(Z, rel=2e-3)
    summed = DSMLoss(sde, "sum")(score, x0, generator=torch.Generator().manual_seed(2))[0]
    mean = DSMLoss(sde, "mean")(score, x0, generator=torch.Generator().manual_seed(2))[0]
    assert summed.item() == pytest.approx(4 * mean.item(), rel=1e-9)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.full((x0.shape[0],), 0.4, dtype=torch.float64)
    assert torch.equal(DSMLoss(sde).per_sample(score, x0, t, noise), dsm_per_sample(score, sde, x0, t, noise))
    with pytest.raises(UserError, match="loss.reduction"):
        DSMLoss(sde, "nope")


def test_each_yaml_builds_its_loss_with_the_keys_the_code_reads():
    sde = SDES["vp"]()
    names = sorted(p.stem for p in LOSS_DIR.glob("*.yaml"))
    assert names == sorted(LOSSES) == ["edm", "likelihood", "likelihood_is", "sigma2"]
    for name in names:
        node = OmegaConf.to_container(OmegaConf.load(LOSS_DIR / f"{name}.yaml"))
        assert node["name"] == name and sorted(node) == sorted(["name", *LOSS_KEYS[name]])
        loss = build_loss(sde, node)
        assert type(loss) is LOSSES[name] and loss.reduction == node["reduction"]
    edm = build_loss(sde, {"name": "edm", "data_std": 0.7, "p_mean": -1.0, "p_std": 1.5})
    assert (edm.data_std, edm.p_mean, edm.p_std) == (0.7, -1.0, 1.5)
    assert [n for n, c in LOSSES.items() if not c.follows_sde] == ["edm"]
    with pytest.raises(UserError, match="loss=nope"):
        build_loss(sde, {"name": "nope"})
    with pytest.raises(UserError, match="loss.bogus"):
        build_loss(sde, {"name": "sigma2", "bogus": 1})
    with pytest.raises(UserError, match="loss.data_std"):
        build_loss(sde, {"name": "edm", "data_std": 0.0})


def test_stored_configs_with_weighting_and_sigma_data_read_as_the_group():
    """A stored run's loss (weighting/sigma_data), alone or merged over today's default loss as a resume
    merges it, is read as the group's keys; the module keeps the mapped config for its checkpoints."""
    old = {"weighting": "sigma2", "reduction": "sum", "sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2}
    assert loss_config(old) == {"name": "sigma2", "reduction": "sum"}
    assert loss_config({**old, "weighting": "edm", "sigma_data": 0.3}) == {
        "name": "edm",
        "reduction": "sum",
        "data_std": 0.3,
        "p_mean": -1.2,
        "p_std": 1.2,
    }
    today = OmegaConf.to_container(OmegaConf.load(LOSS_DIR / "edm.yaml"))
    merged = OmegaConf.to_container(OmegaConf.merge(today, old))
    assert loss_config(merged) == {"name": "sigma2", "reduction": "sum"}
    assert loss_config(
        OmegaConf.to_container(
            OmegaConf.merge(OmegaConf.load(LOSS_DIR / "edm.yaml"), {"name": "sigma2", "reduction": "mean"})
        )
    ) == {"name": "sigma2", "reduction": "mean"}

    from sdegen.training.module import ScoreModule

    model = OmegaConf.merge(
        OmegaConf.load(LOSS_DIR.parent / "model" / "scorenet.yaml"),
        OmegaConf.load(LOSS_DIR.parent / "debug_model" / "fast_scorenet.yaml"),
    )
    cfg = OmegaConf.create({"model": model, "loss": merged})
    data = SimpleNamespace(shape=(1, 8, 8), num_classes=10, is_image=True, scaling="centered")
    module = ScoreModule(cfg, SDES["vp"](), data)
    assert type(module.loss_fn) is DSMLoss and module.loss_fn.reduction == "sum"
    assert OmegaConf.to_container(module.cfg.loss) == {"name": "sigma2", "reduction": "sum"}


@pytest.mark.slow
def test_a_run_stored_with_weighting_and_sigma_data_resumes(tiny_run_copy, tmp_path):
    """A checkpoint whose stored config has loss.weighting/loss.sigma_data resumes under today's default loss
    group; the resumed run trains with the stored loss and stores it with the group's keys."""
    old = {"weighting": "sigma2", "reduction": "sum", "sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2}
    for file in (tiny_run_copy / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(file, weights_only=True)
        checkpoint["sdegen"]["cfg"]["loss"] = dict(old)
        torch.save(checkpoint, file)
    step = torch.load(tiny_run_copy / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sdegen",
            "train",
            f"resume={tiny_run_copy}",
            f"trainer.max_steps={step + 1}",
            f"hydra.run.dir={tmp_path / 'resumed'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = [torch.load(f, weights_only=True) for f in tmp_path.rglob("last.ckpt") if "resumed" in str(f)]
    assert resumed and resumed[0]["global_step"] == step + 1
    assert resumed[0]["sdegen"]["cfg"]["loss"] == {"name": "sigma2", "reduction": "sum"}
