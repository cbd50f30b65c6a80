"""``model=scorenet``: a small time-conditioned U-Net that trains in minutes on a CPU.

In the spirit of Song's score-SDE tutorial network (Gaussian random Fourier time features added
to every block, GroupNorm, SiLU, skip connections from encoder to decoder), with residual blocks,
padded convolutions and size-matched upsampling so that any H×W works (28×28 MNIST, 32×32,
4×4 test shapes).  Output parametrised as a score (see ``embeddings.ScoreNetwork``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import GaussianFourierProjection, LabelEmbedding, ScoreNetwork, SinusoidalEmbedding, group_norm


class ResBlock(nn.Module):
    """GN → SiLU → conv → (+ time/label embedding) → GN → SiLU → conv, plus a 1×1 skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ScoreNet(ScoreNetwork):
    """U-Net with ``len(channels)`` resolutions (stride-2 downsampling between them).

    Args:
        sde, data: the SDE (for σ(t)) and the data module (for ``shape``, ``num_classes``).
        channels: width at each resolution, e.g. [32, 64, 128].
        embed_dim: size of the time (and label) embedding.
        fourier_scale: std of the random Fourier frequencies.
        patch_size: fold p×p pixel patches into channels first (pixel-unshuffle; ``pixel_shuffle`` at
            the output), so the U-Net runs at 1/p the resolution: ~p² less compute.
        conditional: learn p(x | y) with a label embedding (null label for CFG); ``class_dropout``
            is the probability of dropping a label during training.
    """

    def __init__(
        self,
        sde,
        data=None,
        *,
        shape=None,
        num_classes=None,
        channels=(32, 64, 128),
        embed_dim=128,
        fourier_scale=16.0,
        embedding="fourier",
        conditional=False,
        class_dropout=0.1,
        time_input="auto",
        input_scaling=True,
        preconditioning="eps",
        data_std=0.5,
        patch_size=1,
        **_,
    ):
        shape = tuple(shape if shape is not None else data.shape)
        num_classes = int(num_classes if num_classes is not None else getattr(data, "num_classes", 0) or 0)
        super().__init__(
            sde,
            shape,
            num_classes if conditional else 0,
            time_input=time_input,
            input_scaling=input_scaling,
            preconditioning=preconditioning,
            data_std=data_std,
        )
        channels = [int(c) for c in channels]
        self.patch_size = int(patch_size)
        c_img = shape[0] * self.patch_size**2  # space-to-depth: p×p patches become channels
        if embedding == "fourier":
            proj = GaussianFourierProjection(embed_dim, fourier_scale)
        else:
            proj = SinusoidalEmbedding(embed_dim)
            if self.time_input == "t":
                self.t_scale = 1000.0
        self.time_embed = nn.Sequential(
            proj, nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.label_embed = (
            LabelEmbedding(num_classes, embed_dim, class_dropout) if conditional and num_classes else None
        )

        self.conv_in = nn.Conv2d(c_img, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = channels[0]
        for i, c in enumerate(channels):
            self.down_blocks.append(ResBlock(c_prev, c, embed_dim))
            c_prev = c
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(c_prev, c_prev, embed_dim)
        self.up_blocks = nn.ModuleList()
        for c in reversed(channels):
            self.up_blocks.append(ResBlock(c_prev + c, c, embed_dim))
            c_prev = c
        self.norm_out = group_norm(c_prev)
        self.conv_out = nn.Conv2d(c_prev, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    t_scale = 1.0

    def body(self, x, c_noise, label):
        emb = self.time_embed(c_noise * self.t_scale)
        if label is not None:
            emb = emb + label
        emb = F.silu(emb)
        p, size = self.patch_size, x.shape[-2:]
        if p > 1:  # pad to a multiple of p, fold p×p patches into channels
            x = F.pixel_unshuffle(F.pad(x, (0, -size[1] % p, 0, -size[0] % p)), p)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for block in self.up_blocks:
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        if p > 1:
            out = F.pixel_shuffle(out, p)[..., : size[0], : size[1]]
        return out
