"""The log-likelihood gap: an exact sample-quality figure on the Gaussian-mixture test bed.

    gap = (E_{x ~ samples}[log p(x)] − E_{x ~ p}[log p(x)]) / D     (nats per dimension)

with p the data mixture (``GaussianMixture.log_prob``, exact) and D the dimension.  A sampler that
draws exactly from p has gap 0 up to Monte-Carlo noise.  Negative = over-dispersed samples (the
last noise level left in them, a too-large Langevin step); positive = over-concentrated ones
(modes too sharp, over-denoised).  Scaling every component's spread by 1 + δ moves it by
≈ −δ (1 + δ/2)… for δ > 0, e.g. a 1 % error in every std gives ≈ −0.01 nats/dim when the
components barely overlap, so it sees errors the within-component sliced W2 cannot see at a
few thousand samples.  Its standard error is ≈ 1/√(2 D n) per term (D = 16, n = 20,000: 0.0013).

The reference term E_p[log p] is estimated from fresh mixture samples (``n_reference`` of them;
cheap, so its share of the standard error is small); the standard error combines both terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Gap:
    gap: float  # nats/dim
    se: float  # its standard error (nats/dim)
    samples_logp: float  # E_samples[log p] / D
    data_logp: float  # E_data[log p] / D
    n: int

    def __str__(self):
        return f"{self.gap:+.4f} ± {self.se:.4f} nats/dim (n = {self.n})"


def mean_and_se(values: torch.Tensor) -> tuple:
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def data_log_likelihood(mixture, n: int = 200_000, *, seed: int = 0, chunk: int = 50_000) -> tuple:
    """(E_p[log p(x)] / D, its SE / D) from n fresh mixture samples."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, n, chunk):
        x, _ = mixture.sample(min(chunk, n - start), generator=g)
        values.append(mixture.log_prob(x.double()))
    mean, se = mean_and_se(torch.cat(values))
    return mean / mixture.dim, se / mixture.dim


def log_likelihood_gap(mixture, x: torch.Tensor, *, reference=None, n_reference: int = 200_000, seed: int = 0) -> Gap:
    """The gap of samples ``x`` (shape (n, *shape)) against the mixture, with its standard error.

    ``reference`` = ``data_log_likelihood(mixture, ...)`` to reuse the data term across calls.
    Non-finite samples make the gap −inf (they are infinitely unlikely)."""
    if reference is None:
        reference = data_log_likelihood(mixture, n_reference, seed=seed)
    data_mean, data_se = reference
    x = x.reshape(x.shape[0], -1).double().cpu()
    if not torch.isfinite(x).all():
        return Gap(float("-inf"), float("inf"), float("-inf"), data_mean, len(x))
    logp = mixture.log_prob(x) / mixture.dim
    sample_mean, sample_se = mean_and_se(logp)
    return Gap(sample_mean - data_mean, math.sqrt(sample_se**2 + data_se**2), sample_mean, data_mean, len(x))
