"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6).

A score network trained with label dropout gives both the conditional score s(x, t, y) and the
unconditional one s(x, t, ∅) (called with ``y=None``).  Guided sampling uses

    s̃(x, t, y) = (1 + w) s(x, t, y) − w s(x, t, ∅),

which is the score of p_t(x | y)^{1+w} / p_t(x)^w: ``w = 0`` is the plain conditional model,
``w > 0`` trades diversity for class fidelity.  Two network evaluations per call.
"""

from __future__ import annotations

from ..errors import UserError
from .labels import LabelSource, resolve_labels


class ClassifierFreeGuidedScore:
    def __init__(self, score_fn, y, scale: float = 0.0):
        self.score_fn = score_fn
        self.label_source = y if isinstance(y, LabelSource) else LabelSource(y)
        self.scale = float(scale)

    @property
    def network_evaluations(self) -> int:
        """Network calls per score call (the sampler's NFE counts them): 2 unless w = 0."""
        return 1 if self.scale == 0 else 2

    def start_batch(self, batch_size, generator=None, device=None):
        return self.label_source.start_batch(batch_size, generator, device)

    def batch_labels(self, batch_size, device=None):
        return self.label_source.for_batch(batch_size, device)

    def __call__(self, x, t):
        y = self.batch_labels(x.shape[0], x.device)
        conditional = self.score_fn(x, t, y)
        if self.scale == 0:
            return conditional
        unconditional = self.score_fn(x, t, None)
        return (1 + self.scale) * conditional - self.scale * unconditional


def classifier_free_guidance(score_fn, y, scale: float = 0.0) -> ClassifierFreeGuidedScore:
    """``(1 + w) s(x, t, y) − w s(x, t, ∅)`` for ``score_fn(x, t, y)`` (y=None: the null label)."""
    return ClassifierFreeGuidedScore(score_fn, y, scale)


def build(guidance_cfg, score_model, sde=None, data=None, device="cpu", classifier=None):
    """``guidance=cfg``: needs a class-conditional score model (``model.conditional=true``)."""
    cfg = dict(guidance_cfg)
    num_classes = getattr(score_model, "num_classes", None)
    if not num_classes:
        raise UserError(
            "guidance=cfg needs a class-conditional score model: train it with "
            "model.conditional=true model.class_dropout=0.1 (or use model=gmm)"
        )
    labels = resolve_labels(cfg.get("label"), num_classes)
    return classifier_free_guidance(score_model, LabelSource(labels, num_classes), float(cfg.get("scale", 1.0)))
