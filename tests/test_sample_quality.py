"""FID / KID / precision-recall from one pass of features: closed forms and planted cases."""

import numpy as np
import pytest
import torch
from torch import nn

from sdegen.metrics import fid_is
from sdegen.metrics.features import RawFeatures
from sdegen.metrics.kid import kid
from sdegen.metrics.precision_recall import precision_recall
from sdegen.metrics.sample_quality import cached_features, feature_metrics, features_cache_file


def gaussian(n, dim, mean=0.0, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return mean + scale * torch.randn(n, dim, generator=g, dtype=torch.float64)


def test_kid_is_torchmetrics_kernel_inception_distance():
    """Same subsets (two torch.randperm per subset from the seed) ⇒ torchmetrics' exact numbers."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = gaussian(120, 8, seed=1), gaussian(100, 8, mean=0.3, seed=2)
    metric = KernelInceptionDistance(feature=nn.Identity(), subsets=7, subset_size=50)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(5)
    ref_mean, ref_std = metric.compute()
    mean, std, size = kid(real, fake, subsets=7, subset_size=50, seed=5)
    assert size == 50
    assert mean == pytest.approx(float(ref_mean), rel=1e-10) and std == pytest.approx(float(ref_std), rel=1e-10)


def test_kid_linear_kernel_closed_form_and_zero_for_same_distribution():
    """Degree-1 kernel γxᵀy + c: E[MMD²_u] = γ‖μ_x − μ_y‖² exactly (unbiased at any n)."""
    dim, shift = 16, 0.5
    real, fake = gaussian(4000, dim, seed=3), gaussian(4000, dim, mean=shift, seed=4)
    mean, std, _ = kid(real, fake, subsets=200, subset_size=100, degree=1, seed=0)
    expected = (1 / dim) * dim * shift**2  # γ = 1/dim, ‖μ‖² = dim · shift²
    # sampling error of the 4000-point pools ≈ 0.006 (≈ 2% of the value): 10% is > 4 standard errors
    assert abs(mean - expected) < 0.1 * expected
    real, fake = real[:400], fake[:400]
    # same distribution: the cubic KID is ≈ 0, within a few subset stds (not biased upward like FID)
    other = gaussian(400, dim, seed=5)
    mean0, std0, _ = kid(real, other, subsets=100, subset_size=100, seed=0)
    assert std0 > 0 and abs(mean0) < 3 * std0
    mean1, std1, _ = kid(real, fake, subsets=100, subset_size=100, seed=0)
    assert mean1 > 5 * std1 > 0
    # FID of the same two same-distribution sets is clearly biased upward (≈ dim²/n in this setting)
    assert fid_is.fid_from_features(real, other) > 20 * abs(mean0)


def test_kid_subset_size_is_clipped_to_the_smaller_set():
    _, _, size = kid(gaussian(30, 4), gaussian(20, 4, seed=1), subsets=3, subset_size=1000)
    assert size == 20


def modes(n_per_mode, centres, seed=0, spread=0.05):
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [c + spread * torch.randn(n_per_mode, centres.shape[1], generator=g, dtype=torch.float64) for c in centres]
    )


def test_precision_recall_planted_cases():
    centres = 10.0 * torch.eye(4, 6, dtype=torch.float64)  # 4 well-separated modes in 6-d
    real = modes(50, centres, seed=0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    # copies of the real points of 2 of the 4 modes: every fake is real, exactly half the real set is covered
    assert precision_recall(real, real[:100].clone()) == (1.0, 0.5)
    # fresh samples: the k-NN balls of 50 points per mode miss the tails (≈ 0.85 here, a small-n effect);
    # covering half the modes keeps precision and halves recall
    p0, r0 = precision_recall(real, modes(50, centres, seed=1))
    assert 0.7 < p0 < 1 and 0.7 < r0 < 1
    p, r = precision_recall(real, modes(100, centres[:2], seed=1))
    assert abs(p - p0) < 0.1 and abs(r - r0 / 2) < 0.05
    # off-manifold fakes (away from every mode): precision and recall collapse
    p, r = precision_recall(real, modes(50, centres + 5.0, seed=2))
    assert p < 0.05 and r < 0.05
    # half the fakes off the manifold: precision halves, recall keeps the covered modes
    mixed = torch.cat([modes(25, centres, seed=3), modes(25, centres + 5.0, seed=4)])
    p, r = precision_recall(real, mixed)
    assert abs(p - p0 / 2) < 0.1 and r > 0.5


def test_feature_metrics_fid_closed_form_through_a_feature_network():
    """Linear features of Gaussians are Gaussian: FID = ‖Δμ‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½)."""
    import scipy.linalg

    g = torch.Generator().manual_seed(0)
    net = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(3, 5, generator=g, dtype=torch.float64))
    A = 0.5 * torch.randn(5, 5, generator=g, dtype=torch.float64)
    real = gaussian(4000, 5, seed=1)
    fake = 0.5 + gaussian(4000, 5, seed=2) @ A.T
    W = net.weight.detach().numpy()
    c1, c2 = W @ W.T, W @ (A @ A.T).numpy() @ W.T
    expected = float(((W @ np.full(5, 0.5)) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real))
    out = feature_metrics(net, real, fake, kid_subsets=5, kid_subset_size=500, batch_size=1000, prefix="x_")
    assert abs(out["x_fid"] - expected) < 0.05 * expected
    assert out["x_kid_mean"] > 0 and out["x_n_samples"] == 4000 and out["x_kid_subset_size"] == 500
    same = feature_metrics(RawFeatures(5), real[:300], real[:300], kid_subsets=5, kid_subset_size=100)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and abs(same["fid"]) < 1e-6


def test_is_from_logits_in_the_same_pass():
    class WithLogits(nn.Module):
        def features_and_logits(self, x):
            return x, 50.0 * nn.functional.one_hot(x[:, 0].long() % 4, 4).float()

    x = torch.stack([torch.arange(200.0), torch.zeros(200)], 1).double()
    out = feature_metrics(WithLogits(), x, x, kid_subsets=2, kid_subset_size=50, is_splits=1)
    assert out["is_mean"] == pytest.approx(4.0, rel=1e-4)  # confident, balanced over 4 classes ⇒ IS = 4


def test_reference_features_are_cached_under_the_network_identity(tmp_path):
    x = gaussian(50, 3)
    ident = {"network": "raw", "sha256": "abc", "resize": "none"}
    path = features_cache_file(tmp_path, "gmm_test", ident, x, "50 exact samples")
    first, cached = cached_features(RawFeatures(3), x, path)
    assert not cached and path.is_file()
    second, cached = cached_features(None, x, path)  # would fail if recomputed
    assert cached and torch.equal(first, second)
    assert path != features_cache_file(tmp_path, "gmm_test", {**ident, "sha256": "abd"}, x, "50 exact samples")
    assert path != features_cache_file(tmp_path, "gmm_test", ident, x + 1, "50 exact samples")
