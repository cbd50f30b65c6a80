"""Colorization: grey-scale to colour with any sampler (Song et al. 2021, App. I.3).

The grey level is not a pixel subset, so Song et al. decouple it with a fixed orthogonal matrix
M that maps RGB to (grey, chroma₁, chroma₂) coordinates, z = Mᵀ x per pixel (first column of M is
(1, 1, 1)/√3, so z₀ = √3 · mean(RGB)).  Because M is orthogonal, isotropic forward noise stays
isotropic in z, and colorization is inpainting in that basis: after every step the grey coordinate
is replaced by the forward-noised known grey image and the chroma coordinates are left to the
sampler (``tasks.inpaint.replacement_hook`` with ``to_basis=decouple``, ``from_basis=couple``).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .inpaint import Problem

# Columns: grey (1,1,1)/√3, then two orthonormal chroma directions (Song et al.'s matrix up to signs).
COLOR_BASIS = torch.tensor(
    [
        [1 / math.sqrt(3), -2 / math.sqrt(6), 0.0],
        [1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)],
        [1 / math.sqrt(3), 1 / math.sqrt(6), -1 / math.sqrt(2)],
    ],
    dtype=torch.float64,
)


def decouple(x):
    """RGB (B, 3, H, W) -> (grey, chroma, chroma) coordinates: z_j = Σ_i x_i M_ij."""
    return torch.einsum("bihw,ij->bjhw", x, COLOR_BASIS.to(x.dtype).to(x.device))


def couple(z):
    """Inverse of ``decouple`` (M is orthogonal: M⁻¹ = Mᵀ)."""
    return torch.einsum("bjhw,ij->bihw", z, COLOR_BASIS.to(z.dtype).to(z.device))


def grey_mask(n=1, height=1, width=1):
    """Mask in the decoupled basis: the grey coordinate is known, the chroma ones are not."""
    mask = torch.zeros(n, 3, height, width)
    mask[:, 0] = 1
    return mask


def to_grey(x):
    """The grey image (mean of the channels) repeated on the 3 channels: what is observed."""
    return x.mean(1, keepdim=True).expand_as(x).clone()


def problem(task_cfg, data) -> Problem:
    """``task=colorize``: colour grey versions of test images (needs RGB data)."""
    if tuple(data.shape)[0] != 3:
        raise UserError(
            f"task=colorize needs 3-channel (RGB) data, e.g. data=cifar10; this data has shape {tuple(data.shape)}"
        )

    def prepare(x, generator):
        grey = to_grey(x)  # model space: an affine per-channel-equal scaling commutes with the mean
        return grey, grey_mask(1, *x.shape[2:]), grey

    return Problem(
        "colorize",
        prepare,
        to_basis=decouple,
        from_basis=couple,
        labels={"observed": "grey", "samples": "colourised", "originals": "original"},
    )
