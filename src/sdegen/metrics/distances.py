"""Distances between sample sets, used to check samplers against the exact test bed."""

from __future__ import annotations

import torch


def sliced_wasserstein2(a: torch.Tensor, b: torch.Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equal-size sample sets (flattened).

    Averages the exact 1-D W2² over random unit directions (fixed by ``seed``, so two calls
    compare on the same projections), then takes the square root.
    """
    a, b = a.reshape(a.shape[0], -1).double().cpu(), b.reshape(b.shape[0], -1).double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"need equal-size sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return float(((pa - pb) ** 2).mean().sqrt())


def component_occupancy(mixture, x: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose most likely component (under the data mixture) is k, shape (K,)."""
    labels = mixture.component_log_probs(x).argmax(1)
    return torch.bincount(labels, minlength=mixture.num_components).double() / x.shape[0]
