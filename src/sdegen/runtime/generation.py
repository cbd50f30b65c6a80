"""Batched generation with the total number of score evaluations (NFE) over all batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import samplers
from ..errors import UserError


@dataclass
class Generated:
    """``x`` (model space, CPU), ``nfe_per_batch``, the class labels of guided samples (or None) and
    the first batch's ``SampleResult`` (with its trajectory when ``snapshot_every`` > 0)."""

    x: torch.Tensor
    nfe_per_batch: list
    labels: torch.Tensor | None
    first: object

    @property
    def nfe_total(self) -> int:
        """Score evaluations over all batches (the compute spent)."""
        return int(sum(self.nfe_per_batch))

    @property
    def nfe(self) -> float:
        """Score evaluations each sample saw (the mean over batches: adaptive solvers vary per batch)."""
        return self.nfe_total / max(1, len(self.nfe_per_batch))


def check_finite(x: torch.Tensor, what: str) -> None:
    """NaN/inf in samples is an error, never a success."""
    bad = int((~torch.isfinite(x)).flatten(1).any(1).sum()) if x.ndim > 1 else int((~torch.isfinite(x)).sum())
    if bad:
        raise UserError(
            f"{what}: {bad} of {x.shape[0]} samples contain NaN/inf (check the model or checkpoint, "
            f"the data/model parameters, or use more sampler.steps); nothing was written"
        )


def generate(
    setup,
    score_fn,
    sampler,
    n: int,
    *,
    batch_size: int,
    generator=None,
    snapshot_every: int = 0,
    progress: bool = True,
    step_hook=None,
) -> Generated:
    """Draw ``n`` samples in batches of at most ``batch_size`` with ``sampler`` (a ``samplers.Sampler``, or a
    sampler config that ``setup.sampler`` builds); the samples must be finite."""
    from tqdm.auto import tqdm

    xs, nfes, labels, first = [], [], [], None
    if not isinstance(sampler, samplers.Sampler):
        sampler = setup.sampler(sampler)
    batches = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    with torch.no_grad():
        for b, size in enumerate(tqdm(batches, desc="batches", disable=not progress or len(batches) == 1)):
            if hasattr(score_fn, "start_batch"):  # per-batch class labels of guided sampling
                score_fn.start_batch(size, generator=generator, device=setup.device)
            result = sampler.sample(
                score_fn,
                setup.sde,
                (size, *setup.shape),
                step_hook=step_hook,
                generator=generator,
                device=setup.device,
                snapshot_every=snapshot_every if b == 0 else 0,
                progress=progress,
            )
            xs.append(result.x.detach().float().cpu())
            nfes.append(int(result.nfe))
            if hasattr(score_fn, "batch_labels"):
                labels.append(score_fn.batch_labels(size).cpu())
            if b == 0:
                first = result
    x = torch.cat(xs)
    check_finite(x, f"sampling with {sampler.describe()}")
    return Generated(x, nfes, torch.cat(labels) if labels else None, first)
