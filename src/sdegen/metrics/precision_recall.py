"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models", Sec. 2).

Each set's manifold is the union of balls around its feature vectors, each ball's radius the
distance to the point's k-th nearest neighbour in its own set (k = 3 in the paper):

    precision = fraction of generated features inside the real manifold   (fidelity)
    recall    = fraction of real features inside the generated manifold   (coverage / diversity)

Computed with torch-fidelity's implementation (``calculate_precision_recall_part``: batched
distance matrices, ``kthvalue(k + 1)`` because a point is its own nearest neighbour).  Both are
in [0, 1]; like FID they depend on the sample size (larger sets cover more), so compare runs of
equal size.  The paper uses 50k VGG-16 features; ours are Inception pool3 (or the classifier's).
"""

from __future__ import annotations

import torch


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, *, k: int = 3, batch_size: int = 10000
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` with k-NN manifolds (k-th neighbour radius)."""
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    real, fake = real.reshape(real.shape[0], -1).double(), fake.reshape(fake.shape[0], -1).double()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} vs {fake.shape[1]}")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and generated samples")
    precision, recall = calculate_precision_recall_part(fake, real, neighborhood=int(k), batch_size=int(batch_size))
    return float(precision), float(recall)
