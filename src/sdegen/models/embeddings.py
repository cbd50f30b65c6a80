"""Noise-level embeddings, label embeddings, and the score parametrisation shared by all networks.

Score parametrisation (every trained network): the U-Net body ``F`` predicts −ε from the scaled
input, and the score is

    s_θ(x, t) = F(c_in(t) · x, c_noise(t), y) / σ(t),         σ(t) = sde.marginal_std(t),

because ∇ log p_0t(x_t | x_0) = −ε / σ(t) for x_t = α(t) x_0 + σ(t) ε.  ``c_in = 1/√(α² + σ²)``
keeps the input at unit scale for every SDE (it is 1 for VP and ≈ 1/σ for VE, where x_t reaches
σ_max = 50); set ``input_scaling: false`` for the raw input.  The noise conditioning ``c_noise`` is
``t`` itself (``time_input: t``, Song et al. 2021 — for VP/sub-VP) or log σ(t) (``time_input:
log_sigma``, NCSN/NCSN++ — the natural variable for VE); ``auto`` picks log σ for VE and t otherwise.

``preconditioning: edm`` (Karras et al. 2022, Table 1, written for any linear SDE through the scaled
variables x̃ = x/α, σ̃ = σ/α, so that x̃ = x_0 + σ̃ ε is a VE process for VE, VP and sub-VP alike):
the body predicts a mix of x_0 and ε and the denoiser is

    D(x̃, σ̃) = c_skip x̃ + c_out F(c_in x̃, c_noise),
    c_skip = σ_d²/(σ̃² + σ_d²),  c_out = σ̃ σ_d/√(σ̃² + σ_d²),  c_in = 1/√(σ̃² + σ_d²),  c_noise = ¼ ln σ̃,

returned as a score through Tweedie's formula, s = (α D − x)/σ².  In the original variables
c_in x̃ = x/r with r = √(σ² + α²σ_d²), and

    s_θ(x, t) = −x/r² + α σ_d F/(σ r),

so a zero body gives s = −x/(σ² + α²σ_d²), the exact score of data N(0, σ_d² I).  The body's
regression target then has unit variance at every noise level (Karras et al. 2022, App. B.6).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierProjection(nn.Module):
    """Random Fourier features [sin(2π W c), cos(2π W c)], W ~ N(0, scale²) fixed
    (Tancik et al. 2020; Song et al. 2021, NCSN++)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        proj = c[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class SinusoidalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of a scalar (Vaswani et al. 2017; DDPM, DDPM++)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = c[:, None].float() * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class LabelEmbedding(nn.Module):
    """Learned class embedding with an extra *null* label (index ``num_classes``) for
    classifier-free guidance (Ho & Salimans 2022).  ``y=None`` or entries < 0 mean "no label";
    during training each label is replaced by the null label with probability ``dropout``."""

    def __init__(self, num_classes: int, dim: int, dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.dropout = int(num_classes), float(dropout)
        self.embed = nn.Embedding(self.num_classes + 1, dim)

    def forward(self, y: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        null = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if y is None:
            y = null
        else:
            y = (
                torch.as_tensor(y, device=device).long().expand(batch)
                if torch.as_tensor(y).ndim == 0
                else torch.as_tensor(y, device=device).long()
            )
            y = torch.where((y < 0) | (y > self.num_classes), null, y)
            if self.training and self.dropout > 0:
                y = torch.where(torch.rand(batch, device=device) < self.dropout, null, y)
        return self.embed(y)


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count ≤ max_groups that divides ``channels``
    (and at least 4 channels per group when possible)."""
    groups = min(max_groups, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


PRECONDITIONINGS = ("eps", "edm")


class ScoreNetwork(nn.Module):
    """Base class: turns a body ``self.body(x_in, c_noise, label_emb) -> −ε̂`` into a score model
    with the signature of ``GMMScore``: ``forward(x, t, y=None) -> ∇_x log p_t(x [| y])``.

    Subclasses build ``self.body`` and set ``self.label_embed`` (or None).
    """

    def __init__(
        self,
        sde,
        shape,
        num_classes: int = 0,
        *,
        time_input: str = "auto",
        input_scaling: bool = True,
        preconditioning: str = "eps",
        data_std: float = 0.5,
    ):
        super().__init__()
        self.sde = sde
        self.shape = tuple(int(s) for s in shape)
        self.num_classes = int(num_classes)
        if preconditioning not in PRECONDITIONINGS:
            raise ValueError(f"model.preconditioning must be one of {PRECONDITIONINGS}, got {preconditioning!r}")
        self.preconditioning, self.data_std = preconditioning, float(data_std)
        if time_input == "auto":
            if preconditioning == "edm":
                time_input = "edm"
            else:
                time_input = "log_sigma" if getattr(sde, "name", "") == "ve" else "t"
        if time_input not in ("t", "log_sigma", "edm"):
            raise ValueError(f"time_input must be 't', 'log_sigma', 'edm' or 'auto', got {time_input!r}")
        self.time_input, self.input_scaling = time_input, bool(input_scaling)

    @property
    def class_conditional(self) -> bool:
        """A label embedding with a null label (``model.conditional=true``): ``forward(x, t, y)``."""
        return getattr(self, "label_embed", None) is not None

    def noise_conditioning(self, t: torch.Tensor) -> torch.Tensor:
        if self.time_input == "t":
            return t
        sigma = self.sde.marginal_std(t).clamp_min(1e-12)
        if self.time_input == "edm":  # c_noise = ¼ ln σ̃, σ̃ = σ/α
            return 0.25 * (torch.log(sigma) - torch.log(self.sde.alpha(t)))
        return torch.log(sigma)

    def forward(self, x: torch.Tensor, t, y=None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        sigma = self.sde.marginal_std(t).to(x.dtype)
        shape = (-1,) + (1,) * (x.ndim - 1)
        label = self.label_embed(y, x.shape[0], x.device) if self.label_embed is not None else None
        if self.preconditioning == "edm":
            alpha = self.sde.alpha(t).to(x.dtype)
            r = torch.sqrt(sigma**2 + (alpha * self.data_std) ** 2).reshape(shape)  # α √(σ̃² + σ_d²)
            out = self.body(x / r, self.noise_conditioning(t).to(x.dtype), label)
            return -x / r**2 + (alpha * self.data_std / sigma).reshape(shape) * out / r
        if self.input_scaling:
            alpha = self.sde.alpha(t).to(x.dtype)
            x_in = x / torch.sqrt(alpha**2 + sigma**2).reshape(shape)
        else:
            x_in = x
        minus_eps = self.body(x_in, self.noise_conditioning(t).to(x.dtype), label)
        return minus_eps / sigma.reshape(shape)
