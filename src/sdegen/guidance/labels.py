"""Class labels for guided sampling: one int, a list (per-sample labels), ``all`` or ``random``.

``random`` draws each sample's label from the class prior (uniform over the K classes), fresh for every
batch, with the sampling generator: with ``guidance=cfg guidance.scale=0`` this samples the marginal
p(x) = Σ_y p(y) p(x | y) of a class-conditional network (what ``guidance=none`` does for one).
"""

from __future__ import annotations

import torch

from ..errors import UserError


def resolve_labels(label, num_classes: int | None) -> list[int]:
    """``guidance.label`` as a list of class indices.

    ``8`` -> [8]; ``[1, 3]`` -> [1, 3]; ``all`` -> [0, …, K-1] (one row per class in a grid);
    ``random`` -> the string ``"random"`` (labels drawn per batch by ``LabelSource``).
    """
    if label is None:
        raise UserError("guidance needs a class: set guidance.label=INT, a list [a,b,...], all or random")
    if isinstance(label, str) and label.strip().lower() == "random":
        if not num_classes:
            raise UserError("guidance.label=random needs data with classes (data.num_classes)")
        return RANDOM
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
            raise UserError(
                f"guidance.label {bad} out of range: the data have {num_classes} classes (0..{int(num_classes) - 1})"
            )
    return labels


def batch_labels(labels, batch_size: int, device=None) -> torch.Tensor:
    """Per-sample labels for a batch: L labels spread over the batch in contiguous blocks.

    With B = m·L samples, samples [i·m, (i+1)·m) get labels[i] (so a grid with m images per row
    has one class per row); a single label is used for every sample; B = L uses the list as is.
    """
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    idx = torch.arange(batch_size, device=labels.device) * labels.numel() // batch_size
    return labels[idx]


RANDOM = "random"


class LabelSource:
    """Per-batch labels of a guided score: fixed ones spread over the batch (``batch_labels``), or
    ``RANDOM``: i.i.d. uniform over ``num_classes``, drawn once per batch by ``start_batch`` (the
    generation loop calls it before each batch) so that every score call of a batch sees the same labels."""

    def __init__(self, labels, num_classes: int | None = None):
        self.random = labels == RANDOM
        self.labels = None if self.random else [int(v) for v in torch.as_tensor(labels).reshape(-1).tolist()]
        self.num_classes = int(num_classes or 0)
        self.current = None

    def start_batch(self, batch_size: int, generator=None, device=None) -> torch.Tensor:
        if self.random:
            gen_device = generator.device if generator is not None else "cpu"
            drawn = torch.randint(self.num_classes, (batch_size,), generator=generator, device=gen_device)
            self.current = drawn.to(device or "cpu")
        else:
            self.current = batch_labels(self.labels, batch_size, device)
        return self.current

    def for_batch(self, batch_size: int, device=None) -> torch.Tensor:
        if self.current is None or self.current.shape[0] != batch_size:
            if self.random:
                raise RuntimeError("random labels: call start_batch(batch_size, generator) before sampling a batch")
            return batch_labels(self.labels, batch_size, device)
        return self.current.to(device) if device is not None else self.current
