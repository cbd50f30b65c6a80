"""Guidance on the exact test bed: classifier guidance with the exact posterior p_t(y | x) is exact
conditional sampling; classifier-free guidance has the right formula and sharpens classes."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from sdegen.data.gmm import GMMDataModule
from sdegen.guidance import apply_guidance
from sdegen.guidance.cfg import classifier_free_guidance
from sdegen.guidance.classifier import classifier_guidance
from sdegen.guidance.labels import batch_labels, resolve_labels
from sdegen.metrics.distances import sliced_wasserstein2
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.samplers import build, sample
from sdegen.sde import VESDE, VPSDE, GeometricSigma, LinearSchedule, SubVPSDE

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


SAMPLERS = sorted(p.stem for p in (CONFIGS / "sampler").glob("*.yaml"))
SDES = {
    "ve": lambda: VESDE(GeometricSigma()),
    "vp": lambda: VPSDE(LinearSchedule()),
    "subvp": lambda: SubVPSDE(LinearSchedule()),
}
N = 1000


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.multiscale(4, (1, 4, 4), seed=0)  # the data=gmm default


#: the fewest steps that still sample the test bed within the noise floor at N = 1000 (PC needs 200, Heun 40)
ACCURATE_STEPS = {"em": 100, "pc": 200, "ode": 20, "heun": 40, "restart": 40}


def few_step_cfg(name, max_steps=100):
    """The sampler's YAML with few steps (fast but accurate on the test bed)."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "sampler" / f"{name}.yaml"))
    cfg["steps"] = ACCURATE_STEPS.get(name, min(int(cfg.get("steps", max_steps)), max_steps))
    return cfg


def noise_floor(mixture, component, n=N):
    """Mean sliced W2 between independent exact sample sets of one component."""
    refs = [
        mixture.sample(n, generator=torch.Generator().manual_seed(100 + i), component=component)[0] for i in range(3)
    ]
    return sum(sliced_wasserstein2(refs[i], refs[j]) for i, j in ((0, 1), (0, 2), (1, 2))) / 3


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_classifier_guidance_with_exact_posterior_samples_one_component(mixture, sampler, sde_name):
    sde = SDES[sde_name]()
    model = GMMScore(mixture, sde)
    y = 1
    guided = classifier_guidance(model, model.class_log_posterior, y, scale=1.0)
    x = sample(few_step_cfg(sampler), guided, sde, (N, 1, 4, 4), generator=torch.Generator().manual_seed(0)).x
    ref = mixture.sample(N, generator=torch.Generator().manual_seed(1), component=y)[0]
    floor = noise_floor(mixture, y)
    assert sliced_wasserstein2(x, ref) < 1.2 * floor, (sampler, sde_name)


def test_unguided_samples_are_far_from_the_component(mixture):
    """The bound above can fail: w = 0 samples the whole mixture."""
    sde = VPSDE(LinearSchedule())
    model = GMMScore(mixture, sde)
    guided = classifier_guidance(model, model.class_log_posterior, 1, scale=0.0)
    x = sample(few_step_cfg("em"), guided, sde, (N, 1, 4, 4), generator=torch.Generator().manual_seed(0)).x
    ref = mixture.sample(N, generator=torch.Generator().manual_seed(1), component=1)[0]
    assert sliced_wasserstein2(x, ref) > 5 * noise_floor(mixture, 1)


def test_guided_score_is_the_conditional_score(mixture):
    """w = 1 with the exact posterior is Bayes' rule: ∇log p_t(x) + ∇log p_t(y|x) = ∇log p_t(x|y)."""
    sde = SubVPSDE(LinearSchedule())
    model = GMMScore(mixture, sde)
    x = torch.randn(32, 1, 4, 4, dtype=torch.float64)
    t = torch.rand(32, dtype=torch.float64) * 0.9 + 0.05
    y = torch.arange(32) % 4
    guided = classifier_guidance(model, model.class_log_posterior, y, scale=1.0)
    torch.testing.assert_close(guided(x, t), mixture.score(x, t, sde, y=y), rtol=1e-6, atol=1e-6)
    # w = 3: s + 3 (s_y − s)
    guided3 = classifier_guidance(model, model.class_log_posterior, y, scale=3.0)
    s, s_y = model(x, t), mixture.score(x, t, sde, y=y)
    torch.testing.assert_close(guided3(x, t), s + 3 * (s_y - s), rtol=1e-6, atol=1e-6)


def test_per_sample_labels_give_one_component_per_block(mixture):
    sde = VPSDE(LinearSchedule())
    data = GMMDataModule()
    model = GMMScore(data.mixture, sde)
    guided = apply_guidance(
        {"name": "classifier", "label": "all", "scale": 1.0, "classifier_ckpt": None}, model, sde, data
    )
    x = sample(few_step_cfg("em", 100), guided, sde, (400, 1, 4, 4), generator=torch.Generator().manual_seed(0)).x
    found = mixture.class_log_posterior(x).argmax(1)
    assert (found == torch.arange(400) // 100).double().mean() > 0.99


def test_label_resolution_and_errors():
    assert resolve_labels(8, 10) == [8]
    assert resolve_labels("all", 3) == [0, 1, 2]
    assert resolve_labels([1, 2], 3) == [1, 2]
    assert resolve_labels("[1,2]", 3) == [1, 2]
    assert batch_labels([0, 1], 4).tolist() == [0, 0, 1, 1]
    assert batch_labels([5], 3).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="out of range"):
        resolve_labels(4, 4)
    sde = VPSDE(LinearSchedule())
    with pytest.raises(ValueError, match="classifier_ckpt"):
        apply_guidance({"name": "classifier", "label": 0}, lambda x, t: x, sde, GMMDataModule())
    with pytest.raises(ValueError, match="class-conditional"):
        apply_guidance({"name": "cfg", "label": 0}, lambda x, t: x, sde, GMMDataModule())
    with pytest.raises(ValueError, match="guidance=nope is not known"):
        apply_guidance({"name": "nope"}, None, sde)


def test_classifier_free_guidance_formula_with_exact_scores(mixture):
    sde = VESDE(GeometricSigma())
    model = GMMScore(mixture, sde)
    x = torch.randn(16, 1, 4, 4, dtype=torch.float64) * 3
    t = torch.full((16,), 0.4, dtype=torch.float64)
    y = torch.full((16,), 2)
    # w = 0: the conditional model alone
    torch.testing.assert_close(classifier_free_guidance(model, 2, 0.0)(x, t), model(x, t, y))
    # w = 2: (1 + w) s(x,t,y) − w s(x,t,∅) — the score of p(x|y)^{1+w} / p(x)^w
    cfg_score = apply_guidance({"name": "cfg", "label": 2, "scale": 2.0}, model, sde)
    torch.testing.assert_close(cfg_score(x, t), 3 * model(x, t, y) - 2 * model(x, t))
    # with exact scores classifier-free guidance at w equals classifier guidance at scale w + 1
    cg = classifier_guidance(model, model.class_log_posterior, 2, scale=3.0)
    torch.testing.assert_close(cfg_score(x, t), cg(x, t), rtol=1e-6, atol=1e-6)


def test_classifier_free_guidance_w0_samples_the_conditional(mixture):
    sde = VPSDE(LinearSchedule())
    model = GMMScore(mixture, sde)
    x = sample(
        few_step_cfg("em"),
        classifier_free_guidance(model, 3, 0.0),
        sde,
        (N, 1, 4, 4),
        generator=torch.Generator().manual_seed(0),
    ).x
    ref = mixture.sample(N, generator=torch.Generator().manual_seed(1), component=3)[0]
    assert sliced_wasserstein2(x, ref) < 1.2 * noise_floor(mixture, 3)


class TinyConditionalScore(nn.Module):
    """An MLP score network with a label embedding (index K = the null label ∅)."""

    def __init__(self, sde, dim, num_classes, width=128):
        super().__init__()
        self.sde, self.num_classes = sde, num_classes
        self.label = nn.Embedding(num_classes + 1, width)
        self.register_buffer("freqs", torch.randn(16, generator=torch.Generator().manual_seed(0)) * 4)
        self.inp = nn.Linear(dim + 32, width)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, t, y=None):
        b = x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype).expand(b) if torch.as_tensor(t).ndim == 0 else t.to(x.dtype)
        angle = 2 * math.pi * t[:, None] * self.freqs[None]
        y = torch.full((b,), self.num_classes, dtype=torch.long) if y is None else y
        h = self.inp(torch.cat([x.reshape(b, -1), angle.sin(), angle.cos()], 1)) + self.label(y)
        return (self.net(h) / self.sde.marginal_std(t).to(x.dtype)[:, None]).reshape(x.shape)


def test_classifier_free_guidance_sharpens_a_trained_conditional_model():
    """A conditional model trained with label dropout: w > 0 gives higher class accuracy than w = 0.

    Overlapping components make the conditionals p(x|y) ambiguous, so the sharpened
    p(x|y) p(y|x)^w lands in each class's own region more often (accuracy = exact posterior argmax).
    """
    torch.manual_seed(0)
    mixture = GaussianMixture.multiscale(4, (1, 2, 2), std_min=0.3, std_max=0.8, seed=0)
    sde = VPSDE(LinearSchedule())
    model = TinyConditionalScore(sde, 4, 4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    x_all, y_all = mixture.sample(20000, generator=g)
    for _ in range(300):
        idx = torch.randint(0, len(x_all), (256,), generator=g)
        x0, y = x_all[idx], y_all[idx].clone()
        y[torch.rand(256, generator=g) < 0.2] = 4  # label dropout -> the null label
        t = torch.rand(256, generator=g) * (1 - 1e-3) + 1e-3
        noise = torch.randn(x0.shape, generator=g)
        std = sde.marginal_std(t).float()[:, None, None, None]
        loss = ((std * model(sde.perturb(x0, t, noise), t, y) + noise) ** 2).sum((1, 2, 3)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    labels = torch.arange(1000) * 4 // 1000
    accuracy = {}
    for w in (0.0, 2.0):
        with torch.no_grad():
            x = sample(
                few_step_cfg("em", 100),
                classifier_free_guidance(model, [0, 1, 2, 3], w),
                sde,
                (1000, 1, 2, 2),
                generator=torch.Generator().manual_seed(1),
            ).x
        accuracy[w] = float((mixture.class_log_posterior(x).argmax(1) == labels).double().mean())
    assert accuracy[2.0] > accuracy[0.0] + 0.05, accuracy


def test_random_labels_sample_each_component_with_the_drawn_label(mixture):
    """``guidance.label=random`` with CFG at w = 0 on exact conditional scores: each sample lands in the
    component of its own drawn label, and the labels are uniform over the K classes (binomial check)."""
    from sdegen.guidance.labels import RANDOM, LabelSource
    from sdegen.runtime.generation import generate

    sde = VPSDE(LinearSchedule())
    model = GMMScore(mixture, sde)
    guided = apply_guidance({"name": "cfg", "label": "random", "scale": 0.0}, model, sde, GMMDataModule())
    assert guided.label_source.random
    setup = type("Setup", (), {"sde": sde, "shape": (1, 4, 4), "device": "cpu"})()
    gen = generate(
        setup,
        guided,
        build(few_step_cfg("em", 100)),
        800,
        batch_size=300,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert gen.labels is not None and gen.labels.shape == (800,)
    found = mixture.class_log_posterior(gen.x.double()).argmax(1)
    assert (found == gen.labels).double().mean() > 0.99
    counts = torch.bincount(gen.labels, minlength=4).double()
    assert ((counts - 200).abs() < 4 * math.sqrt(800 * 0.25 * 0.75)).all(), counts
    # the labels of a batch stay fixed across its score calls and are reproducible from the seed
    source = LabelSource(RANDOM, 4)
    first = source.start_batch(50, torch.Generator().manual_seed(3))
    assert torch.equal(source.for_batch(50), first)
    assert torch.equal(LabelSource(RANDOM, 4).start_batch(50, torch.Generator().manual_seed(3)), first)
    with pytest.raises(RuntimeError, match="start_batch"):
        LabelSource(RANDOM, 4).for_batch(5)
    with pytest.raises(ValueError, match="random needs data with classes"):
        resolve_labels("random", 0)


def test_guidance_none_on_a_conditional_network_samples_the_label_marginal():
    """``guidance=none`` keeps an unconditional model as is; a class-conditional network gets random
    labels at w = 0 (the marginal Σ_y p(y) p(x | y)), scale −1 is its null-label score."""
    from sdegen.models.scorenet import ScoreNet

    sde = VPSDE(LinearSchedule())
    plain = ScoreNet(sde, shape=(1, 8, 8), num_classes=10, channels=(8, 16), embed_dim=16)
    assert apply_guidance({"name": "none"}, plain, sde) is plain
    cond = ScoreNet(sde, shape=(1, 8, 8), num_classes=10, channels=(8, 16), embed_dim=16, conditional=True).eval()
    guided = apply_guidance({"name": "none"}, cond, sde)
    assert guided.label_source.random and guided.scale == 0.0
    x, t = torch.randn(6, 1, 8, 8), torch.full((6,), 0.5)
    y = guided.start_batch(6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(guided(x, t), cond(x, t, y))
    null = apply_guidance({"name": "cfg", "label": "random", "scale": -1.0}, cond, sde)
    null.start_batch(6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(null(x, t), cond(x, t, None))


def test_classifier_free_guidance_counts_two_network_evaluations_per_step(mixture):
    sde = VPSDE(LinearSchedule())
    model = GMMScore(mixture, sde)
    cfg = {"_target_": "sdegen.samplers.em.sample_em", "steps": 7}
    plain = sample(cfg, classifier_free_guidance(model, 1, 0.0), sde, (4, 1, 4, 4)).nfe
    guided = sample(cfg, classifier_free_guidance(model, 1, 2.0), sde, (4, 1, 4, 4)).nfe
    assert plain == 8 and guided == 2 * plain
