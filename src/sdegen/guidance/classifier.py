"""Classifier guidance (Song et al. 2021, Sec. 5 and App. I.1; Dhariwal & Nichol 2021).

The conditional score of class y is the unconditional score plus the gradient of a
time-dependent classifier's log-posterior (thesis Eq. 4.2):

    ∇_x log p_t(x | y) ≈ s_θ(x, t) + w ∇_x log p_φ(y | x, t)

``w = 1`` is Bayes' rule exactly; ``w > 1`` sharpens the class.  The result is a plain
``score_fn(x, t)``, so every sampler and every SDE use it unchanged.

``build`` (``guidance=classifier``) uses ``guidance.classifier_ckpt`` (a ``sdegen train
task=classifier`` checkpoint).  With ``model=gmm`` and no checkpoint it uses the exact posterior
``p_t(y | x)`` of the Gaussian mixture (``GMMScore.class_log_posterior``): the ideal classifier,
which makes guided sampling exactly the conditional sampling of component y.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .labels import LabelSource, resolve_labels


def class_log_prob_gradient(log_posterior_fn, x, t, y):
    """∇_x log p(y | x, t) for per-sample labels y (autograd through the classifier)."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        log_post = log_posterior_fn(x_in, t)  # (B, K)
        selected = log_post[torch.arange(x.shape[0], device=x.device), y.to(x.device)]
        (grad,) = torch.autograd.grad(selected.sum(), x_in)
    return grad.to(x.dtype)


class ClassifierGuidedScore:
    """``score_fn(x, t) + scale · ∇_x log p(y | x, t)`` with labels spread over the batch."""

    def __init__(self, score_fn, log_posterior_fn, y, scale: float = 1.0):
        self.score_fn, self.log_posterior_fn = score_fn, log_posterior_fn
        self.label_source = y if isinstance(y, LabelSource) else LabelSource(y)
        self.scale = float(scale)

    def start_batch(self, batch_size, generator=None, device=None):
        return self.label_source.start_batch(batch_size, generator, device)

    def batch_labels(self, batch_size, device=None):
        return self.label_source.for_batch(batch_size, device)

    def __call__(self, x, t):
        score = self.score_fn(x, t)
        if self.scale == 0:
            return score
        y = self.batch_labels(x.shape[0], x.device)
        return score + self.scale * class_log_prob_gradient(self.log_posterior_fn, x, t, y)


def classifier_guidance(score_fn, log_posterior_fn, y, scale: float = 1.0) -> ClassifierGuidedScore:
    """Guided score ``s(x, t) + scale ∇_x log p(y | x, t)`` (thesis Eq. 4.2).

    ``log_posterior_fn(x, t) -> (B, K)`` log-probabilities (log-softmax of a classifier's
    logits); ``y`` an int or per-sample labels (spread over the batch in blocks, see
    ``labels.batch_labels``).
    """
    return ClassifierGuidedScore(score_fn, log_posterior_fn, y, scale)


def log_posterior_of(classifier):
    """log_softmax of a classifier ``model(x, t) -> logits``."""

    def log_posterior(x, t):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype)
        return torch.log_softmax(classifier(x, t), dim=-1)

    return log_posterior


def build(guidance_cfg, score_model, sde, data=None, device="cpu", classifier=None):
    """``guidance=classifier``: the guided score of ``score_model`` (see module docstring).
    ``classifier``: the loaded time-dependent classifier (``runtime.checkpoints.load_classifier`` of
    ``guidance.classifier_ckpt``), or None for the exact posterior of ``model=gmm``."""
    cfg = dict(guidance_cfg)
    num_classes = getattr(data, "num_classes", None) or getattr(score_model, "num_classes", None)
    labels = resolve_labels(cfg.get("label"), num_classes)
    if classifier is not None:
        log_posterior = log_posterior_of(classifier.to(device).eval().requires_grad_(False))  # gradients w.r.t. x only
    elif hasattr(score_model, "class_log_posterior"):
        log_posterior = score_model.class_log_posterior  # exact p_t(y | x) of model=gmm
    else:
        raise UserError(
            "guidance=classifier needs guidance.classifier_ckpt=PATH "
            "(a checkpoint of `sdegen train task=classifier`); only model=gmm has an exact posterior"
        )
    return classifier_guidance(
        score_model, log_posterior, LabelSource(labels, num_classes), float(cfg.get("scale", 1.0))
    )
