"""Feature networks for FID / IS, and the input checks they share.

Every extractor is an ``nn.Module`` with ``num_features`` (what torchmetrics'
``FrechetInceptionDistance(feature=module)`` needs) and ``forward(x) -> (N, num_features)``:

* the FID Inception: ``inception.load_inception`` / ``inception.InceptionView`` (this module is below
  ``inception``, which feeds its images through ``as_uint8_rgb``).
* ``RawFeatures``: the flattened coordinates, for non-image data (the Gaussian-mixture test bed).
* ``ClassifierFeatures``: the project's time-dependent classifier at t = eps — ``model.features``
  (FID in its feature space) or ``model(x, t)`` logits (IS / accuracy).  An offline domain metric.

Image inputs go through ``as_uint8_rgb``: (N, C, H, W) with C ∈ {1, 3} (or N, H, W, C), uint8
or floats in [0, 1]; grey images are repeated to 3 channels; Inception resizes to 299×299 (TF1 bilinear).
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
            raise ValueError(
                f"float images must lie in [0, 1] (got range [{lo:.3g}, {hi:.3g}]); "
                "unscale model-space samples ([-1, 1]) with data.unscale first"
            )
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
