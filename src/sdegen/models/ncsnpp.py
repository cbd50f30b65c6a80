"""``model=ncsnpp``: an NCSN++ / DDPM++-style U-Net (Song et al. 2021, Sec. 4.3 and App. H).

Ingredients kept from score_sde's ``ncsnpp.py``: BigGAN-style residual blocks (GN → SiLU → conv,
time embedding added after the first conv, dropout, resampling inside the residual block, skip
connections rescaled by 1/√2), self-attention at the 16×16 resolution, ``num_res_blocks`` blocks per
resolution with widths ``nf · ch_mult``, and the time embedding: Gaussian Fourier features of
log σ for VE (NCSN++) or sinusoidal features of 999·t for VP/sub-VP (DDPM++).  Omitted: FIR
resampling and the progressive input/output pyramids (minor gains in the paper's ablation).

The CIFAR-10 networks of the paper are nf=128, ch_mult=[1,2,2,2], num_res_blocks=4 (NCSN++) or 2
(DDPM++); the ``configs/model/ncsnpp.yaml`` default (nf=64, 2 blocks) is a smaller DDPM++ that a
single GPU trains in hours.  Output parametrised as a score (see ``embeddings.ScoreNetwork``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import GaussianFourierProjection, LabelEmbedding, ScoreNetwork, SinusoidalEmbedding, group_norm


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-style residual block with optional up/down-sampling inside it; output (skip + h)/√2."""

    def __init__(self, c_in, c_out, emb_dim, dropout=0.1, resample: str | None = None, skip_rescale=True):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.resample, self.skip_rescale = resample, skip_rescale
        nn.init.zeros_(self.conv2.weight)  # score_sde: init_scale=0 on the last conv of each block
        nn.init.zeros_(self.conv2.bias)

    def _resample(self, x, size=None):
        if self.resample == "down":
            return F.avg_pool2d(x, 2, ceil_mode=True)
        if self.resample == "up":
            return F.interpolate(x, size=size or tuple(2 * s for s in x.shape[-2:]), mode="nearest")
        return x

    def forward(self, x, emb, size=None):
        h = F.silu(self.norm1(x))
        h, x = self._resample(h, size), self._resample(x, size)
        h = self.conv1(h) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        out = self.skip(x) + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


class AttnBlock(nn.Module):
    """Single-head self-attention over the H×W positions (DDPM), output (x + h)/√2."""

    def __init__(self, channels, skip_rescale=True):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.skip_rescale = skip_rescale

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        h = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        h = self.proj(h.transpose(1, 2).reshape(B, C, H, W))
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class NCSNpp(ScoreNetwork):
    """NCSN++/DDPM++ U-Net.

    Args:
        nf: base width; level i has nf·ch_mult[i] channels.
        ch_mult: channel multipliers per resolution (one downsampling between consecutive levels).
        num_res_blocks: residual blocks per resolution (decoder: one more, consuming the skips).
        attn_resolutions: resolutions (side length) with self-attention after each block.
        dropout: dropout inside the residual blocks.
        embedding: ``fourier`` | ``sinusoidal`` | ``auto`` (Fourier for VE, sinusoidal otherwise).
        conditional / class_dropout: class-conditional with a null label (classifier-free guidance).
    """

    def __init__(
        self,
        sde,
        data=None,
        *,
        shape=None,
        num_classes=None,
        nf=64,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=2,
        attn_resolutions=(16,),
        dropout=0.1,
        embedding="auto",
        fourier_scale=16.0,
        skip_rescale=True,
        conditional=False,
        class_dropout=0.1,
        time_input="auto",
        input_scaling=True,
        preconditioning="eps",
        data_std=0.5,
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
        if embedding == "auto":
            embedding = "fourier" if getattr(sde, "name", "") == "ve" else "sinusoidal"
        # score_sde: Fourier features of log σ (VE) / sinusoidal features of 999 t (VP)
        self.c_noise_scale = 999.0 if embedding == "sinusoidal" and self.time_input == "t" else 1.0
        proj = GaussianFourierProjection(nf, fourier_scale) if embedding == "fourier" else SinusoidalEmbedding(nf)
        emb_dim = 4 * nf
        self.time_embed = nn.Sequential(proj, nn.Linear(nf, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embed = LabelEmbedding(num_classes, emb_dim, class_dropout) if conditional and num_classes else None

        c_img, res = shape[0], shape[-1]
        attn_resolutions = {int(r) for r in attn_resolutions}

        def block(ci, co, resample=None):
            return ResnetBlockBigGAN(ci, co, emb_dim, dropout, resample, skip_rescale)

        self.conv_in = nn.Conv2d(c_img, nf, 3, padding=1)
        self.down = nn.ModuleList()  # entries: (kind, module)
        skip_channels, c = [nf], nf
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(block(c, nf * mult))
                c = nf * mult
                if res in attn_resolutions:
                    self.down.append(AttnBlock(c, skip_rescale))
                skip_channels.append(c)
            if level < len(ch_mult) - 1:
                self.down.append(block(c, c, "down"))
                res = math.ceil(res / 2)
                skip_channels.append(c)
        self.mid = nn.ModuleList([block(c, c), AttnBlock(c, skip_rescale), block(c, c)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(block(c + skip_channels.pop(), nf * mult))
                c = nf * mult
                if res in attn_resolutions:
                    self.up.append(AttnBlock(c, skip_rescale))
            if level > 0:
                self.up.append(block(c, c, "up"))
                res = res * 2
        self.norm_out = group_norm(c)
        self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def body(self, x, c_noise, label):
        emb = self.time_embed(c_noise * self.c_noise_scale)
        if label is not None:
            emb = emb + label
        emb = F.silu(emb)
        h = self.conv_in(x)
        skips = [h]
        for m in self.down:
            if isinstance(m, AttnBlock):
                h = m(h)
                skips[-1] = h
            else:
                h = m(h, emb)
                skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for m in self.up:
            if isinstance(m, AttnBlock):
                h = m(h)
            elif m.resample == "up":
                h = m(h, emb, size=skips[-1].shape[-2:])
            else:
                h = m(torch.cat([h, skips.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))
