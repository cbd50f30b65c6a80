"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4 / App. D).

KID = unbiased MMD² between real and generated features with the cubic polynomial kernel
k(x, y) = (γ xᵀy + c)^d, γ = 1/dim, c = 1, d = 3:

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] − 2/m² Σ_{i,j} k(x_i, y_j),

averaged over ``subsets`` random subsets of ``subset_size`` real and generated features; the
std over subsets is reported beside it (torchmetrics' ``KernelInceptionDistance`` semantics: its
``poly_mmd`` is used here, on features computed once, and its subset draws — two
``torch.randperm`` per subset — are reproduced from ``seed``).  Unlike FID, MMD²_u is unbiased: its
expectation does not depend on the sample size, so KID of a few hundred samples is comparable
with KID of 50k (FID of 500 samples is biased upward by tens of points).  It can be slightly
negative when the two distributions are equal.
"""

from __future__ import annotations

import torch


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int | None = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float, int]:
    """(mean, std over subsets, subset size used) of the unbiased polynomial-kernel MMD².

    ``subset_size`` is clipped to the smaller set (None: the smaller set); features are used in float64.
    """
    from torchmetrics.image.kid import poly_mmd

    real, fake = real.reshape(real.shape[0], -1).double(), fake.reshape(fake.shape[0], -1).double()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} vs {fake.shape[1]}")
    size = min(real.shape[0], fake.shape[0], int(subset_size or 1 << 62))
    if size < 2:
        raise ValueError("KID needs at least 2 real and 2 generated samples")
    scores = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for _ in range(int(subsets)):
            f_real = real[torch.randperm(real.shape[0])[:size]]
            f_fake = fake[torch.randperm(fake.shape[0])[:size]]
            scores.append(poly_mmd(f_real, f_fake, degree, gamma, coef))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False)), int(size)
