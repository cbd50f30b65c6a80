"""Inpainting / imputation with any sampler (Song et al. 2021, App. I.2; thesis Eq. 4.3).

After every step of the reverse process the known part of the state is replaced by the known
data pushed forward to the current time,

    x'_t = m ⊙ x̃_t + (1 − m) ⊙ x_t,      x̃_t ~ p_0t(x_t | x_0^known) = N(α(t) x_0, σ(t)² I),

which is a ``step_hook(x, t) -> x``: every sampler calls it, so every sampler × SDE × guidance
combination inpaints.  Optional RePaint resampling (Lugmayr et al. 2022, Alg. 1): each step is redone
``r`` times, jumping back with the forward transition in between, which lets the unknown part
harmonise with the known one (``task.resample=r``, handled by ``samplers.base.run_steps``).
The initial state is drawn at the prior's own scale (``sde.prior_sample``); the thesis's reference
code drew it at unit scale, which is wrong for VE.

Colorization (``tasks/colorize.py``) is the same hook in an orthogonal colour basis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import samplers
from ..samplers.base import SampleResult
from .masks import make_mask


def replacement_hook(sde, x_known, mask, *, generator=None, to_basis=None, from_basis=None):
    """``step_hook(x, t)``: replace the known coordinates by forward-noised data (Eq. 4.3).

    ``mask`` (1 = known) broadcasts against ``x_known``.  With ``to_basis``/``from_basis`` (an
    orthogonal change of coordinates, e.g. colour decoupling) the replacement happens in that
    basis; the mask then refers to its coordinates.  At t = 0 the known part is copied exactly.
    """
    x_known = x_known.detach()
    mask = mask.to(x_known.dtype)
    to_basis = to_basis or (lambda v: v)
    from_basis = from_basis or (lambda v: v)

    def hook(x, t):
        noise = torch.randn(x_known.shape, generator=generator, dtype=x_known.dtype, device=x_known.device)
        t = torch.as_tensor(t, dtype=torch.float64, device=x_known.device)
        noised = sde.perturb(x_known, t, noise).to(x.dtype)  # x̃_t ~ N(α(t) x_0, σ(t)² I)
        return from_basis(mask * to_basis(noised) + (1 - mask) * to_basis(x))

    return hook


def impute(
    score_fn,
    sde,
    sampler,
    x_known,
    mask,
    *,
    resample=None,
    generator=None,
    to_basis=None,
    from_basis=None,
    snapshot_every=0,
    progress=False,
    data_std=None,
) -> SampleResult:
    """Fill the unknown part (mask = 0) of ``x_known`` (model space) with ``sampler`` (a ``samplers.Sampler``
    or a sampler config; ``resample``: RePaint's resampling count, overriding ``sampler.resample``;
    ``data_std``: the data's std, for grids that follow it, as in ``samplers.sample``).  A guided or
    class-conditional ``score_fn`` (one with ``start_batch``) gets this batch's labels first: ``guidance.label``,
    or drawn uniformly with ``generator`` as ``sdegen sample`` draws them."""
    sampler = samplers.build(sampler, data_std)
    if resample is not None:
        sampler = sampler.with_options(resample=int(resample))
    if hasattr(score_fn, "start_batch"):  # a class-conditional score: the batch's labels, drawn as in sampling
        score_fn.start_batch(x_known.shape[0], generator=generator, device=x_known.device)
    hook = replacement_hook(sde, x_known, mask, generator=generator, to_basis=to_basis, from_basis=from_basis)
    x_init = sde.prior_sample(x_known.shape, generator=generator, device=x_known.device)  # prior scale, not N(0, I)
    result = sampler.sample(
        score_fn,
        sde,
        x_known.shape,
        step_hook=hook,
        generator=generator,
        device=x_known.device,
        x_init=x_init,
        snapshot_every=snapshot_every,
        progress=progress,
    )
    # samplers that end at t = eps without the denoising step leave the known part noised at σ(eps):
    # paste the known data itself (RePaint does the same)
    to_basis = to_basis or (lambda v: v)
    from_basis = from_basis or (lambda v: v)
    m = mask.to(result.x.dtype)
    result.x = from_basis(m * to_basis(x_known.to(result.x.dtype)) + (1 - m) * to_basis(result.x))
    return result


# --- the problem `sdegen sample task=inpaint` solves (commands/sample.py runs it) ----------------------
@dataclass
class Problem:
    """A conditional-sampling problem: ``prepare(x_model, generator) -> (x_known, mask, shown)`` gives the
    known data (model space), the mask (1 = known, in the hook's basis) and the observation to show;
    ``to_basis``/``from_basis`` an orthogonal change of coordinates; ``rows`` the figure's rows."""

    kind: str
    prepare: Callable
    to_basis: Callable | None = None
    from_basis: Callable | None = None
    rows: tuple = ("observed", "samples", "originals")
    labels: dict = field(default_factory=lambda: {"observed": "masked", "samples": "imputed", "originals": "original"})


def problem(task_cfg, data) -> Problem:
    """``task=inpaint``: mask test images (``task.mask``) and fill the masked part."""
    mask_cfg = dict(task_cfg.get("mask") or {})
    kind = mask_cfg.pop("kind", "box")
    fill = float(task_cfg.get("fill", 0.5))  # what the figure shows in the missing region (data space)

    def prepare(x, generator):
        mask = make_mask(kind, x.shape[0], tuple(x.shape[1:]), generator=generator, **mask_cfg)
        shown = data.unscale(x) * mask + fill * (1 - mask)
        return x, mask, data.scale(shown)

    return Problem("inpaint", prepare)


def save_rows_figure(path, row_arrays, row_names, n_cols=8):
    """A figure with one row per array (observed / imputed / original, thesis Fig. 4.12)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = min(n_cols, row_arrays[0].shape[0])
    fig, axes = plt.subplots(len(row_arrays), n_cols, figsize=(1.3 * n_cols, 1.4 * len(row_arrays)), squeeze=False)
    for r, (arr, name) in enumerate(zip(row_arrays, row_names)):
        for c in range(n_cols):
            img = np.clip(np.asarray(arr[c], dtype=np.float32), 0, 1)
            ax = axes[r, c]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.transpose(img, (1, 2, 0)))
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- exactness check on the Gaussian-mixture test bed ----------------------------------------------
def exact_imputation_error(
    mixture,
    sde,
    score_fn,
    sampler_cfg,
    mask,
    *,
    n_obs=8,
    per_obs=200,
    resample=1,
    seed=0,
    to_basis=None,
    from_basis=None,
):
    """Distance of imputed samples to the exact conditional p(x_missing | x_observed) of a mixture.

    ``n_obs`` observations are drawn from the mixture; each is imputed ``per_obs`` times and compared
    with as many exact draws of ``mixture.sample_conditional``.  Returns the mean over observations of
    ``sw2`` (sliced W2 to the exact conditional), its ``floor`` (sliced W2 between two exact draw sets
    of the same size) and ``tv`` (total variation between the exact conditional component weights and
    the components the imputed samples fall in).  With ``to_basis``/``from_basis`` the mixture lives
    in the decoupled basis (colorization) and ``mask`` refers to its coordinates.
    """
    from ..metrics.distances import sliced_wasserstein2

    to_basis = to_basis or (lambda v: v)
    from_basis = from_basis or (lambda v: v)
    observed, _ = mixture.sample(n_obs, generator=torch.Generator().manual_seed(seed + 1000))
    known_basis = observed.repeat_interleave(per_obs, 0)
    result = impute(
        score_fn,
        sde,
        sampler_cfg,
        from_basis(known_basis),
        mask,
        resample=resample,
        generator=torch.Generator().manual_seed(seed),
        to_basis=to_basis,
        from_basis=from_basis,
        data_std=mixture.data_std,
    )
    imputed = to_basis(result.x)
    exact = mixture.sample_conditional(known_basis, mask, generator=torch.Generator().manual_seed(seed + 1))
    exact2 = mixture.sample_conditional(known_basis, mask, generator=torch.Generator().manual_seed(seed + 2))
    log_w, _, _ = mixture.conditional(observed, mask)
    sw2, floor, tv = [], [], []
    for i in range(n_obs):
        rows = slice(i * per_obs, (i + 1) * per_obs)
        sw2.append(sliced_wasserstein2(imputed[rows], exact[rows]))
        floor.append(sliced_wasserstein2(exact2[rows], exact[rows]))
        comp = mixture.component_log_probs(imputed[rows]).argmax(1)
        occupancy = torch.bincount(comp, minlength=mixture.num_components).double() / per_obs
        tv.append(0.5 * float((occupancy - log_w[i].exp()).abs().sum()))
    known_error = float(((imputed - known_basis) * mask).abs().max())
    return {
        "sw2": float(np.mean(sw2)),
        "floor": float(np.mean(floor)),
        "tv": float(np.mean(tv)),
        "known_error": known_error,
        "nfe": result.nfe,
    }
