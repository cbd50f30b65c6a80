"""``sdegen sample``: draw samples with any sampler from a checkpoint or the exact mixture score.

    sdegen sample model=gmm data=gmm sampler=dpm_solver n_samples=1000
    sdegen sample ckpt=outputs/train/<run> sampler=pc n_samples=64
    sdegen sample model=gmm data=gmm compare=[pc,em,ode,dpm_solver]
    sdegen sample ckpt=... task=inpaint task.mask.kind=half      (task=colorize likewise)

Writes into the run folder: ``samples.npz`` (``runtime.samples_file``: ``x`` float32 N×C×H×W in data
space, ``images`` uint8 N×H×W×C for image data, ``labels`` when guided, ``nfe``, ``nfe_total``,
``nfe_per_batch``, ``seconds``),
``grid.png``, ``evolution.png``, ``compare.png`` (with ``compare=``) and ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import torch

from .. import samplers, viz
from ..runtime import samples_file
from ..runtime.config import group_config
from ..runtime.generation import check_finite, generate
from ..runtime.loggers import log_metrics
from ..runtime.rundir import run_dir
from ..runtime.setup import Setup, build_setup, cli_overrides, guided_score
from ..tasks import colorize, inpaint

log = logging.getLogger("sdegen")

#: the step-hook tasks of `sdegen sample` (task=generate is the plain sampler)
HOOK_TASKS = {"inpaint": inpaint.problem, "colorize": colorize.problem}


def _auto_snapshot_every(cfg, sampler: samplers.Sampler) -> int:
    value = cfg.get("snapshot_every")
    return max(1, sampler.steps // 10) if value is None else int(value)


def _points_or_images(data, x_model):
    """Figure panel for samples in model space: uint8 images for image data, 2-D points otherwise."""
    x = data.unscale(x_model)
    return viz.to_uint8_images(x) if getattr(data, "is_image", False) else viz.project_2d(x)


def _reference_points(data, n):
    if getattr(data, "is_image", False) or not hasattr(data, "reference"):
        return None
    x, _ = data.reference(n, generator=torch.Generator().manual_seed(12345))
    return viz.project_2d(x)


def save_config(cfg, setup: Setup, out, sampler: samplers.Sampler) -> None:
    """``config.yaml``: the config the samples were drawn with (the sampler as it ran, ``auto`` resolved), the
    checkpoint's sde/schedule/model/data included (``sdegen eval samples=`` reads the data config from it)."""
    from omegaconf import OmegaConf

    from ..runtime.config import to_plain

    plain = to_plain(cfg)
    plain["sampler"] = dict(sampler.config)
    if getattr(setup, "ckpt_cfg", None) is not None:
        plain.update({k: setup.ckpt_cfg[k] for k in ("sde", "schedule", "model", "data") if k in setup.ckpt_cfg})
    OmegaConf.save(OmegaConf.create(plain), out / "config.yaml")


def main(cfg):
    """Entry point of ``sdegen sample``."""
    setup = build_setup(cfg)
    score_fn = guided_score(cfg, setup)
    task = str((cfg.get("task") or {}).get("name", "generate"))
    out = run_dir(cfg)
    if task in HOOK_TASKS:
        return run_task(task, cfg, setup, score_fn, out)

    sampler = setup.sampler(cfg.sampler)  # checked before any work (runtime.config.check_config)
    compare = compare_configs(cfg)
    n, batch_size = int(cfg.n_samples), int(cfg.batch_size)
    progress = bool(cfg.get("progress", True))
    data = setup.data

    start = time.perf_counter()
    gen = generate(
        setup,
        score_fn,
        sampler,
        n,
        batch_size=batch_size,
        generator=setup.generator(),
        snapshot_every=_auto_snapshot_every(cfg, sampler),
        progress=progress,
    )
    seconds = time.perf_counter() - start
    arrays = samples_file.samples_arrays(gen, data, seconds)
    images = arrays["images"] if "images" in arrays else viz.to_uint8_images(arrays["x"], value_range=None)
    metrics = {
        "nfe": gen.nfe,
        "nfe_total": gen.nfe_total,
        "seconds": seconds,
        "samples_per_second": n / max(seconds, 1e-9),
    }
    compare_panels = (
        compare_samplers(setup, score_fn, compare, min(n, batch_size), progress=progress) if compare else None
    )

    out.mkdir(parents=True, exist_ok=True)
    samples_file.write_samples(out / "samples.npz", arrays)
    save_config(cfg, setup, out, sampler)
    if gen.labels is not None and len(np.unique(gen.labels.numpy())) > 1:
        lab = gen.labels.numpy()  # class-guided: one row per class (at most 16 samples each)
        classes = np.unique(lab)
        per = int(min(16, min((lab == c).sum() for c in classes)))
        picked = np.concatenate([np.flatnonzero(lab == c)[:per] for c in classes])
        grid_path = viz.save_grid(images[picked], out / "grid.png", nrow=per)
    else:
        grid_path = viz.save_grid(images[:64], out / "grid.png")
    first = gen.first
    if first is not None and first.trajectory:  # evolution: noise → data, thesis Fig. 4.1
        panels = [_points_or_images(data, snap) for snap in first.trajectory]
        viz.evolution_figure(
            panels,
            first.times,
            out / "evolution.png",
            rows=int(cfg.get("evolution_rows", 8)),
            reference=_reference_points(data, len(first.trajectory[0])),
            title=sampler.describe(),
        )
    if compare_panels is not None:
        panels, nfes = compare_panels
        viz.comparison_figure(
            panels, out / "compare.png", reference=_reference_points(data, min(n, batch_size)), nrow=8
        )
        metrics.update(nfes)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log_metrics(cfg, out, metrics, image=grid_path)
    log.info(
        f"wrote {n} samples to {out}/samples.npz ({sampler.describe()}, {sampler.settings()}, "
        f"{gen.nfe:g} NFE per sample, "
        f"{seconds:.1f} s)"
    )
    return metrics


def compare_configs(cfg) -> dict:
    """``compare=[pc,em,...]`` (or one name, ``compare=pc``) as ``{name: sampler config}``: every sampler at
    ``sampler.steps`` when the command line sets it, else at its own default (one log line says which)."""
    names = cfg.get("compare") or []
    names = [str(names)] if isinstance(names, str) else [str(name) for name in names]
    configs = {name: group_config("sampler", name) for name in names}
    if not configs:
        return configs
    if "sampler.steps" in cli_overrides():
        steps = int(cfg.sampler.steps)
        for sampler_cfg in configs.values():
            sampler_cfg["steps"] = steps
        log.info(f"compare: every sampler at sampler.steps={steps}")
    else:
        own = ", ".join(f"{name} {c.get('steps', '?')}" for name, c in configs.items())
        log.info(f"compare: each sampler at its own default steps ({own}); sampler.steps=N runs them all at N")
    return configs


def compare_samplers(setup: Setup, score_fn, sampler_cfgs: dict, n: int, *, progress=False):
    """Final samples of each sampler ({name: config}) from the SAME initial noise (thesis Fig. 4.2):
    (panels, NFE metrics)."""
    x_init = setup.sde.prior_sample((n, *setup.shape), generator=setup.generator(), device=setup.device)
    panels, metrics = {}, {}
    for name, sampler_cfg in sampler_cfgs.items():
        sampler = setup.sampler(sampler_cfg)
        with torch.no_grad():
            result = sampler.sample(
                score_fn,
                setup.sde,
                x_init.shape,
                x_init=x_init.clone(),
                generator=setup.generator(),
                device=setup.device,
                progress=progress,
            )
        check_finite(result.x, f"compare: {name}")
        panel = _points_or_images(setup.data, result.x.detach().float().cpu())
        label = f"{name} ({sampler.steps} steps, {result.nfe:g} NFE)"
        panels[label] = panel[:64] if getattr(setup.data, "is_image", False) else panel
        metrics[f"compare/{name}/nfe"] = float(result.nfe)
    return panels, metrics


def run_task(task: str, cfg, setup, score_fn, out):
    """``task=inpaint|colorize``: impute test images with the task's step hook (samples.npz, summary.json
    and the masked / imputed / original figure, thesis Fig. 4.12)."""
    problem = HOOK_TASKS[task](cfg.task, setup.data)
    n, batch_size = int(cfg.n_samples), int(cfg.get("batch_size") or cfg.n_samples)
    cpu_generator = torch.Generator().manual_seed(int(cfg.seed))  # images and masks
    generator = setup.generator(cfg.seed)  # sampling noise, on the device
    ref = setup.data.reference(n, split=str(cfg.task.get("split") or "test"), generator=cpu_generator)
    originals, labels = ref if isinstance(ref, (tuple, list)) else (ref, None)
    originals = originals.float()
    known, mask, shown = problem.prepare(originals, cpu_generator)
    sampler = setup.sampler(cfg.sampler)
    if cfg.task.get("resample") is not None:
        sampler = sampler.with_options(resample=int(cfg.task.resample))
    outputs, nfe = [], 0
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        m = mask[sl] if mask.shape[0] == n else mask
        result = inpaint.impute(
            score_fn,
            setup.sde,
            sampler,
            known[sl].to(setup.device),
            m.to(setup.device),
            generator=generator,
            to_basis=problem.to_basis,
            from_basis=problem.from_basis,
            progress=bool(cfg.get("progress", True)),
        )
        outputs.append(result.x.detach().cpu())
        nfe += result.nfe
    imputed = torch.cat(outputs)
    check_finite(imputed, f"task={task}")
    unscale = setup.data.unscale
    arrays = {
        "samples": unscale(imputed).numpy(),
        "originals": unscale(originals).numpy(),
        "observed": unscale(shown).numpy(),
        "masks": mask.expand(n, *mask.shape[1:]).numpy(),
    }
    if labels is not None:
        arrays["labels"] = torch.as_tensor(labels).numpy()
    summary = {
        "task": task,
        "n": n,
        "nfe_per_batch": nfe / max(1, len(outputs)),
        "nfe_total": nfe,
        "resample": int(cfg.task.get("resample") or cfg.sampler.get("resample", 1)),
        "mse_to_original": float(((imputed - originals) ** 2).mean()),
    }
    out.mkdir(parents=True, exist_ok=True)
    samples_file.write_samples(out / "samples.npz", arrays)
    save_config(cfg, setup, out, sampler)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if getattr(setup.data, "is_image", False):
        inpaint.save_rows_figure(
            out / f"{task}.png",
            [arrays[k] for k in problem.rows],
            [problem.labels.get(k, k) for k in problem.rows],
            n_cols=int(cfg.task.get("figure_cols", 8)),
        )
    log.info(f"{task}: {n} samples -> {out}/samples.npz ({summary['nfe_per_batch']:.0f} NFE per batch)")
    return {"samples": imputed, "originals": originals, "masks": mask, "dir": str(out), **summary}
