"""Class labels for guided sampling: one int, a list (per-sample labels) or ``all``."""

from __future__ import annotations

import torch

from ..errors import UserError


def resolve_labels(label, num_classes: int | None) -> list[int]:
    """``guidance.label`` as a list of class indices.

    ``8`` -> [8]; ``[1, 3]`` -> [1, 3]; ``all`` -> [0, …, K-1] (one row per class in a grid).
    """
    if label is None:
        raise UserError("guidance needs a class: set guidance.label=INT, a list [a,b,...] or all")
    if isinstance(label, str):
        if label.strip().lower() == "all":
            if not num_classes:
                raise UserError("guidance.label=all needs data with classes (data.num_classes)")
            return list(range(int(num_classes)))
        label = [int(v) for v in label.strip("[]").split(",") if v.strip()]
    labels = [int(label)] if isinstance(label, int) else [int(v) for v in label]
    if not labels:
        raise UserError("guidance.label is an empty list")
    if num_classes:
        bad = [v for v in labels if not 0 <= v < int(num_classes)]
        if bad:
            raise UserError(f"guidance.label {bad} out of range: the data have {num_classes} classes (0..{int(num_classes) - 1})")
    return labels


def batch_labels(labels, batch_size: int, device=None) -> torch.Tensor:
    """Per-sample labels for a batch: L labels spread over the batch in contiguous blocks.

    With B = m·L samples, samples [i·m, (i+1)·m) get labels[i] (so a grid with m images per row
    has one class per row); a single label is used for every sample; B = L uses the list as is.
    """
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    idx = torch.arange(batch_size, device=labels.device) * labels.numel() // batch_size
    return labels[idx]
