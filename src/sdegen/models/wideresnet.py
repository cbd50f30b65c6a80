"""A time-dependent Wide-ResNet classifier p_φ(y | x_t, t) for classifier guidance.

Wide Residual Networks (Zagoruyko & Komodakis 2016): depth = 6n + 4 (n pre-activation basic
blocks per group, 3 groups of widths 16k, 32k, 64k, strides 1, 2, 2).  As in Song et al. 2021's
noise-conditional classifier (thesis Fig. 4.9, ``TimeDependentWideResNet``), the noise level enters
through Gaussian random Fourier features of the time input, passed through an MLP and added (per
channel) inside every residual block.  The time input is ``t`` or log σ(t) (``time_input``).

``forward(x, t) -> logits`` (B, K); ``features(x, t) -> penultimate features`` (B, 64k).
The default (depth 10, widen 2) has ~0.3 M parameters and trains on CPU in minutes on MNIST.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GaussianFourierFeatures(nn.Module):
    """[sin(2π W c), cos(2π W c)], W ~ N(0, scale²) fixed (Tancik et al. 2020)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, c):
        angle = 2 * math.pi * c[:, None] * self.W[None]
        return torch.cat([angle.sin(), angle.cos()], dim=-1)


def norm(channels: int) -> nn.GroupNorm:
    groups = min(32, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class TimeBasicBlock(nn.Module):
    """Pre-activation basic block (norm-act-conv ×2) with the time embedding added after conv1."""

    def __init__(self, in_ch, out_ch, stride, embed_dim, dropout=0.0):
        super().__init__()
        self.norm1, self.conv1 = norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.time = nn.Linear(embed_dim, out_ch)
        self.norm2, self.conv2 = norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None if in_ch == out_ch and stride == 1 else nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x, emb):
        h = F.silu(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(h)
        h = self.conv1(h) + self.time(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + skip


class TimeDependentWideResNet(nn.Module):
    """WRN-depth-k with time conditioning; ``forward(x, t) -> logits``.

    Args:
        in_channels, num_classes: from the data (``data.shape[0]``, ``data.num_classes``).
        depth: 6n + 4 (10, 16, 22, 28, ...); widen_factor: k.
        embed_dim, fourier_scale: the time embedding; time_input: ``t`` or ``log_sigma`` (needs ``sde``).
    """

    def __init__(
        self,
        in_channels=1,
        num_classes=10,
        depth=10,
        widen_factor=2,
        dropout=0.0,
        embed_dim=64,
        fourier_scale=16.0,
        time_input="t",
        sde=None,
    ):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 >= 10 (10, 16, 22, 28 ...), got {depth}")
        if time_input not in ("t", "log_sigma"):
            raise ValueError(f"time_input must be 't' or 'log_sigma', got {time_input!r}")
        if time_input == "log_sigma" and sde is None:
            raise ValueError("time_input=log_sigma needs the SDE")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes, self.time_input, self.sde = int(num_classes), time_input, sde
        self.embed = nn.Sequential(
            GaussianFourierFeatures(embed_dim, fourier_scale),
            nn.Linear(embed_dim, embed_dim),
            nn.SiLU(),
            nn.Linear(embed_dim, embed_dim),
        )
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, in_ch = [], widths[0]
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(TimeBasicBlock(in_ch, widths[group + 1], stride if i == 0 else 1, embed_dim, dropout))
                in_ch = widths[group + 1]
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = norm(in_ch)
        self.head = nn.Linear(in_ch, self.num_classes)
        self.feature_dim = in_ch

    def _time(self, t, x):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype)
        if self.time_input == "log_sigma":
            t = torch.log(self.sde.marginal_std(t.double()).clamp_min(1e-12)).to(x.dtype)
        return t

    def features(self, x, t):
        """Penultimate features (after the final norm, activation and global average pooling)."""
        emb = self.embed(self._time(t, x))
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, emb)
        return F.silu(self.final_norm(h)).mean(dim=(2, 3))

    def forward(self, x, t):
        return self.head(self.features(x, t))
