"""Continuous-time denoising score matching (Song et al. 2021, Eq. 7): one small callable per loss of the
``loss`` group (``configs/loss/<name>.yaml``), built by ``build_loss(sde, cfg.loss)``.

    L(θ) = E_t E_{x_0} E_ε [ λ(t) ‖ s_θ(x_t, t) + ε/σ(t) ‖² ],   x_t = α(t) x_0 + σ(t) ε,

written per draw as w(t) ‖σ s_θ + ε‖² with w = λ/σ².  Each loss is its distribution of t and its λ:

    sigma2          t ~ U(eps, T) of the chosen SDE, λ = σ²    → ‖σ s_θ + ε‖²   (Song et al. 2021)
    likelihood      t ~ U(eps, T), λ = g²                       → (g²/σ²) ‖σ s_θ + ε‖²   (Song et al. 2021b, Thm. 1)
    likelihood_is   likelihood, t ~ q(t) ∝ g²/σ²                → Z/(T − eps) ‖σ s_θ + ε‖²   (2021b, Sec. 5)
    edm             ln σ̃ ~ N(p_mean, p_std²), σ̃ = σ/α, whatever the SDE, λ = σ² (σ̃² + σ_d²)/σ_d²
                                                                → (σ̃² + σ_d²)/σ_d² ‖σ s_θ + ε‖²   (Karras et al. 2022)

``likelihood_is``: each draw carries (g²/σ²)/((T − eps) q(t)) = Z/(T − eps) with Z = ∫ g²/σ² dt, so its
expectation is the ``likelihood`` objective exactly, with less variance.  For every linear SDE
g²/σ² = d/dt log(σ²/α²) = −2 dλ/dt with λ = log(α/σ), so q is "λ uniform on [λ(T), λ(eps)]":
t = t_from_log_snr(λ) and Z = 2 (λ(eps) − λ(T)).

``edm`` (Karras et al. 2022, Eq. 2 and Table 1): λ(σ) = (σ² + σ_d²)/(σ σ_d)² on ‖D − x_0‖² = σ̃² ‖σ s + ε‖² in
the scaled variables x̃ = x/α, so it holds for VE, VP and sub-VP; t is the time where σ/α = σ̃, clamped to
[eps, T].  It sees only σ/α: with the EDM preconditioning the network it trains is the same for every SDE
and schedule (``follows_sde = False``).

``reduction``: ``mean`` averages ‖·‖² over the data dimensions (O(1) values), ``sum`` sums them
(score_sde's ``reduce_mean=False``); the batch is always averaged.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from ..sde.base import SDE, expand_as

REDUCTIONS = ("mean", "sum")
#: keys of a stored loss config with their name in the ``loss`` group (read from older checkpoints)
RENAMED_KEYS = {"weighting": "name", "sigma_data": "data_std"}


def dsm_per_sample(score_fn, sde: SDE, x0, t, noise, y=None, reduction: str = "mean"):
    """reduce ‖σ(t) s(x_t, t) + ε‖² per sample, for given times and noise (no weight, no t sampling)."""
    sigma = sde.marginal_std(t)
    xt = sde.perturb(x0, t, noise)
    score = score_fn(xt, t) if y is None else score_fn(xt, t, y)
    residual = (expand_as(sigma, x0) * score + noise).flatten(1).pow(2)
    return residual.mean(1) if reduction == "mean" else residual.sum(1)


class DSMLoss:
    """The σ² loss (``loss=sigma2``) and the base of the others:
    ``loss(score_fn, x0, y=None, generator=None) -> (scalar loss, per-sample losses, t)``.

    A loss is ``sample_t`` (its distribution of t) and ``weight`` (λ(t)/σ(t)² per draw).

    Args:
        sde: the forward SDE.
        reduction: ``mean`` | ``sum`` over data dimensions.
        eps: smallest time (default ``sde.eps``).
    """

    name = "sigma2"
    #: whether the noise levels it trains on follow the chosen SDE and schedule
    follows_sde = True

    def __init__(self, sde: SDE, reduction: str = "mean", eps: float | None = None):
        if reduction not in REDUCTIONS:
            raise UserError(f"loss.reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.sde, self.reduction = sde, reduction
        self.eps = float(sde.eps if eps is None else eps)

    def sample_t(self, n: int, *, device=None, generator=None) -> torch.Tensor:
        """t ~ U(eps, T)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64).to(device)
        return (self.eps + u * (self.sde.T - self.eps)).float()

    def weight(self, t: torch.Tensor) -> torch.Tensor | float:
        """λ(t)/σ(t)² = 1."""
        return 1.0

    def per_sample(self, score_fn, x0, t, noise, y=None) -> torch.Tensor:
        """w(t) · reduce‖σ s(x_t, t) + ε‖² for given times and noise."""
        value = dsm_per_sample(score_fn, self.sde, x0, t, noise, y, self.reduction)
        weight = self.weight(t)
        return value * (weight.to(value.dtype) if torch.is_tensor(weight) else weight)

    def __call__(self, score_fn, x0, y=None, *, generator=None):
        t = self.sample_t(x0.shape[0], generator=generator).to(device=x0.device, dtype=x0.dtype)
        if generator is None:  # drawn in logical (N, C, H, W) order: the same noise for any memory format
            noise = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device)
        else:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        if not x0.is_contiguous():  # e.g. channels_last=true: x_t keeps the batch's layout
            noise = torch.empty_like(x0).copy_(noise)
        per_sample = self.per_sample(score_fn, x0, t, noise, y)
        return per_sample.mean(), per_sample, t


class LikelihoodLoss(DSMLoss):
    """``loss=likelihood``: t ~ U(eps, T), λ = g(t)², so w = g²/σ²."""

    name = "likelihood"

    def weight(self, t):
        return self.sde.diffusion(t) ** 2 / self.sde.marginal_std(t) ** 2


class LikelihoodISLoss(DSMLoss):
    """``loss=likelihood_is``: t ~ q(t) ∝ g²/σ² (log-SNR uniform), w = Z/(T − eps), Z = 2 (λ(eps) − λ(T))."""

    name = "likelihood_is"

    def __init__(self, sde: SDE, reduction: str = "mean", eps: float | None = None):
        super().__init__(sde, reduction, eps)
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731 - a one-use float64 scalar
        self.log_snr_min = float(sde.log_snr(f64(sde.T)))
        self.log_snr_max = float(sde.log_snr(f64(self.eps)))
        self.is_weight = 2 * (self.log_snr_max - self.log_snr_min) / (sde.T - self.eps)

    def sample_t(self, n: int, *, device=None, generator=None) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64).to(device)
        lam = self.log_snr_max + u * (self.log_snr_min - self.log_snr_max)
        return self.sde.t_from_log_snr(lam).to(torch.float64).clamp(self.eps, self.sde.T).float()

    def weight(self, t):
        return self.is_weight


class EDMLoss(DSMLoss):
    """``loss=edm``: ln σ̃ ~ N(p_mean, p_std²) with σ̃ = σ/α (t where σ/α = σ̃, clamped to [eps, T]);
    w = (σ̃² + σ_d²)/σ_d², σ_d = ``data_std`` (Karras et al. 2022: 0.5, −1.2, 1.2)."""

    name = "edm"
    follows_sde = False

    def __init__(
        self,
        sde: SDE,
        reduction: str = "mean",
        eps: float | None = None,
        data_std: float = 0.5,
        p_mean: float = -1.2,
        p_std: float = 1.2,
    ):
        super().__init__(sde, reduction, eps)
        if not (math.isfinite(float(data_std)) and float(data_std) > 0):
            raise UserError(f"loss.data_std must be a number > 0, got {data_std!r}")
        if not (math.isfinite(float(p_std)) and float(p_std) > 0):
            raise UserError(f"loss.p_std must be a number > 0, got {p_std!r}")
        self.data_std, self.p_mean, self.p_std = float(data_std), float(p_mean), float(p_std)

    def sample_t(self, n: int, *, device=None, generator=None) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64).to(device)
        # ln σ̃ = −λ (λ = log(α/σ)) ~ N(p_mean, p_std²), by inverse-CDF of u
        log_sigma_tilde = self.p_mean + self.p_std * torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))
        return self.sde.t_from_log_snr(-log_sigma_tilde).to(torch.float64).clamp(self.eps, self.sde.T).float()

    def weight(self, t):
        sigma_tilde = self.sde.marginal_std(t) / self.sde.alpha(t)
        return (sigma_tilde**2 + self.data_std**2) / self.data_std**2


#: the ``loss`` group's choices
LOSSES = {cls.name: cls for cls in (EDMLoss, DSMLoss, LikelihoodLoss, LikelihoodISLoss)}
#: the keys each loss's YAML has besides ``name``
LOSS_KEYS = {
    "edm": ("reduction", "data_std", "p_mean", "p_std"),
    "sigma2": ("reduction",),
    "likelihood": ("reduction",),
    "likelihood_is": ("reduction",),
}


def loss_config(node) -> dict:
    """A ``loss`` config as plain data with the group's keys: ``weighting``/``sigma_data`` of a stored config
    read as ``name``/``data_std``, and keys of another loss (left by merging a stored run over today's
    defaults) dropped.  Unknown keys are a ``UserError``."""
    cfg = dict(node or {})
    if "weighting" in cfg:  # a stored config names the loss by its weighting
        cfg["name"] = cfg.pop("weighting")
    if "sigma_data" in cfg:
        cfg["data_std"] = cfg.pop("sigma_data")
    name = str(cfg.get("name", "sigma2"))
    if name not in LOSSES:
        raise UserError(f"loss={name} is not a valid choice; valid loss values: {', '.join(sorted(LOSSES))}")
    known = {key for keys in LOSS_KEYS.values() for key in keys}
    unknown = sorted(k for k in cfg if k != "name" and k not in known)
    if unknown:
        raise UserError(f"loss.{unknown[0]} is not a key of loss={name}; its keys: {', '.join(LOSS_KEYS[name])}")
    return {"name": name, **{k: cfg[k] for k in LOSS_KEYS[name] if k in cfg}}


def follows_sde(name: str) -> bool:
    """Whether loss ``name`` draws its noise levels from the chosen SDE and schedule."""
    return LOSSES[name].follows_sde


def build_loss(sde: SDE, node) -> DSMLoss:
    """The loss of a ``loss`` config node (``configs/loss/<name>.yaml``) for ``sde``."""
    cfg = loss_config(node)
    return LOSSES[cfg.pop("name")](sde, **cfg)
