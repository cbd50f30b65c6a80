"""``sdegen sample``: draw samples with any sampler from a checkpoint or the exact mixture score.

    sdegen sample model=gmm data=gmm sampler=dpm_solver n_samples=1000
    sdegen sample ckpt=outputs/train/.../checkpoints/last.ckpt sampler=pc n_samples=64
    sdegen sample model=gmm data=gmm compare=[pc,em,ode,dpm_solver]

Writes into the Hydra run folder: ``samples.npz`` (``x`` float32 N×C×H×W in data space, ``images``
uint8 N×H×W×C for image data, ``y`` labels when guided, ``nfe``, ``nfe_per_batch``, ``seconds``),
``grid.png``, ``evolution.png``, ``compare.png`` (with ``compare=``) and ``metrics.json``.

``setup(cfg)`` is the reusable part (SDE, score model, data module, device) that other tasks
(inpaint, colorize, eval) import.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .. import samplers, viz

log = logging.getLogger(__name__)

#: config groups a checkpoint fixes; overriding them on the command line with other values is refused
CHECKPOINT_GROUPS = ("sde", "schedule", "model", "data")


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu; anything else is passed to ``torch.device``."""
    name = str(name or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"sdegen: error: device={name} but CUDA is not available (use device=cpu or auto)")
    return device


@dataclass
class Setup:
    """What every sampling task needs: the SDE, the score model (eval mode, on ``device``), the data
    module (shape, num_classes, is_image, scale/unscale) and the device."""

    cfg: Any
    sde: Any
    score_model: torch.nn.Module
    data: Any
    device: torch.device
    ckpt_cfg: dict | None = None  # the checkpoint's stored config (plain data), when loaded from one

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    def generator(self, seed: int | None = None) -> torch.Generator:
        """A torch.Generator on the device seeded with ``seed`` (default: cfg.seed)."""
        seed = int(self.cfg.get("seed", 0) if seed is None else seed)
        return torch.Generator(device=self.device).manual_seed(seed)


def _cli_overrides() -> list[str]:
    """Group/key names the user set on the command line (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        overrides = HydraConfig.get().overrides.task
    except Exception:  # pragma: no cover - Hydra not running
        return []
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]


def _describe(node) -> str:
    if isinstance(node, dict):
        target = node.get("_target_", "?")
        args = {k: v for k, v in node.items() if k != "_target_" and not isinstance(v, dict)}
        return f"{target.rsplit('.', 1)[-1]}({', '.join(f'{k}={v}' for k, v in args.items())})"
    return repr(node)


def checkpoint_conflicts(cfg, ckpt_cfg: dict, overridden: list[str]) -> list[str]:
    """One message per config group the user chose explicitly that differs from the checkpoint's."""
    chosen = {key.split(".", 1)[0] for key in overridden}
    conflicts = []
    for group in CHECKPOINT_GROUPS:
        if group not in chosen or group not in cfg or group not in ckpt_cfg:
            continue
        mine = OmegaConf.to_container(cfg[group], resolve=True) if isinstance(cfg[group], DictConfig) else cfg[group]
        theirs = ckpt_cfg[group]
        if group == "data":  # only the kind of data matters (paths, batch sizes may differ)
            mine, theirs = (d.get("_target_") if isinstance(d, dict) else d for d in (mine, theirs))
        if mine != theirs:
            conflicts.append(f"{group}: checkpoint has {_describe(theirs)}, command line asks {_describe(mine)}")
    return conflicts


def setup(cfg) -> Setup:
    """Build (sde, score_model, data, device) from ``cfg`` or from the checkpoint ``cfg.ckpt``."""
    from ..config import build_sde

    import hydra.utils

    device = resolve_device(cfg.get("device", "auto"))
    ckpt = cfg.get("ckpt")
    if not ckpt:
        data = hydra.utils.instantiate(cfg.data)
        sde = build_sde(cfg)
        model = hydra.utils.instantiate(cfg.model, sde=sde, data=data)
        ckpt_cfg = None
    else:
        path = Path(str(ckpt)).expanduser()
        if not path.exists():
            raise SystemExit(f"sdegen: error: no checkpoint or run folder at {path}")
        try:
            from ..training.checkpoint import load_score_model
        except ImportError as err:  # pragma: no cover - training not installed
            raise SystemExit(f"sdegen: error: cannot load checkpoints ({err})") from None
        model, ckpt_cfg = load_score_model(str(path), map_location=device)
        conflicts = checkpoint_conflicts(cfg, ckpt_cfg, _cli_overrides())
        if conflicts:
            raise SystemExit(f"sdegen: error: {path.name} does not match the command line ({'; '.join(conflicts)}); "
                             f"drop those overrides to use the checkpoint's own config")
        stored = OmegaConf.create(ckpt_cfg)
        data = hydra.utils.instantiate(stored.data)
        sde = build_sde(stored)
    model = model.to(device).eval()
    return Setup(cfg=cfg, sde=sde, score_model=model, data=data, device=device, ckpt_cfg=ckpt_cfg)


def run_dir(cfg=None) -> Path:
    """The Hydra run folder (``cfg.output_dir`` or ./outputs/sample outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # pragma: no cover
        pass
    return Path(str((cfg or {}).get("output_dir") or "outputs/sample"))


def sampler_config(cfg_or_name) -> dict:
    """A sampler config as plain data: a mapping as is, or a name loaded from configs/sampler/<name>.yaml."""
    if isinstance(cfg_or_name, str):
        from ..cli import config_dir

        path = config_dir() / "sampler" / f"{cfg_or_name}.yaml"
        if not path.is_file():
            from ..cli import group_choices

            raise SystemExit(f"sdegen: error: unknown sampler {cfg_or_name!r}; valid: {', '.join(group_choices('sampler'))}")
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if isinstance(cfg_or_name, DictConfig):
        return OmegaConf.to_container(cfg_or_name, resolve=True)
    return dict(cfg_or_name)


def _auto_snapshot_every(cfg, sampler_cfg) -> int:
    value = cfg.get("snapshot_every")
    if value is None:
        return max(1, int(sampler_cfg.get("steps", 1000)) // 10)
    return int(value)


def generate(setup_obj: Setup, score_fn, sampler_cfg, n: int, *, batch_size: int, generator, snapshot_every=0,
             progress=True, step_hook=None):
    """Draw ``n`` samples in batches; returns (x model space on CPU, nfe per batch, labels or None,
    first batch's SampleResult with its trajectory)."""
    from tqdm.auto import tqdm

    xs, nfes, labels, first = [], [], [], None
    batches = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    with torch.no_grad():
        for b, size in enumerate(tqdm(batches, desc="batches", disable=not progress or len(batches) == 1)):
            result = samplers.sample(sampler_cfg, score_fn, setup_obj.sde, (size, *setup_obj.shape),
                                     step_hook=step_hook, generator=generator, device=setup_obj.device,
                                     snapshot_every=snapshot_every if b == 0 else 0, progress=progress)
            xs.append(result.x.detach().float().cpu())
            nfes.append(int(result.nfe))
            if hasattr(score_fn, "batch_labels"):
                labels.append(score_fn.batch_labels(size).cpu())
            if b == 0:
                first = result
    return torch.cat(xs), nfes, (torch.cat(labels) if labels else None), first


def _points_or_images(data, x_model, value_range=None):
    """Figure panel for samples in model space: uint8 images for image data, 2-D points otherwise."""
    x = data.unscale(x_model)
    if getattr(data, "is_image", False):
        return viz.to_uint8_images(x)
    return viz.project_2d(x)


def _reference_points(data, n):
    if getattr(data, "is_image", False) or not hasattr(data, "reference"):
        return None
    x, _ = data.reference(n, generator=torch.Generator().manual_seed(12345))
    return viz.project_2d(x)


def _log(cfg, metrics: dict, image_path: Path | None):
    """Log to the configured loggers (CSV, W&B); always also writes metrics.json."""
    try:
        from ..training.loggers import build_loggers
    except ImportError:
        build_loggers = None
    loggers = []
    try:
        if build_loggers is not None:
            loggers = list(build_loggers(cfg, run_dir=run_dir(cfg)))
        else:
            import hydra.utils

            loggers = [hydra.utils.instantiate(node) for node in (cfg.get("logger") or {}).values()
                       if isinstance(node, DictConfig) and "_target_" in node]
    except Exception as err:  # logging must never lose the samples
        log.warning("loggers unavailable (%s); metrics.json only", err)
    for logger in loggers:
        try:
            logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=0)
            if image_path is not None and hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(image_path)])
            logger.save()
            if hasattr(logger, "finalize"):
                logger.finalize("success")
        except Exception as err:
            log.warning("logger %s failed: %s", type(logger).__name__, err)


def main(cfg):
    """Entry point of ``sdegen sample``."""
    setup_obj = setup(cfg)
    from ..guidance import apply_guidance

    score_fn = apply_guidance(cfg.get("guidance"), setup_obj.score_model, setup_obj.sde, setup_obj.data,
                              setup_obj.device)
    task = (cfg.get("task") or {}).get("name", "generate")
    if task != "generate":
        return importlib.import_module(f"sdegen.tasks.{task}").run(cfg, setup_obj, score_fn)

    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    sampler_cfg = sampler_config(cfg.sampler)
    n, batch_size = int(cfg.n_samples), int(cfg.get("batch_size", 256))
    if n < 1 or batch_size < 1:
        raise SystemExit(f"sdegen: error: n_samples and batch_size must be >= 1 (got {n}, {batch_size})")
    progress = bool(cfg.get("progress", True))
    snapshot_every = _auto_snapshot_every(cfg, sampler_cfg)
    data = setup_obj.data

    start = time.perf_counter()
    x_model, nfes, labels, first = generate(setup_obj, score_fn, sampler_cfg, n, batch_size=batch_size,
                                            generator=setup_obj.generator(), snapshot_every=snapshot_every,
                                            progress=progress)
    seconds = time.perf_counter() - start
    x = data.unscale(x_model).float()
    arrays = {"x": x.numpy().astype(np.float32), "nfe": np.int64(round(float(np.mean(nfes)))),
              "nfe_per_batch": np.asarray(nfes, dtype=np.int64), "seconds": np.float64(seconds)}
    if labels is not None:
        arrays["y"] = labels.numpy().astype(np.int64)
    is_image = bool(getattr(data, "is_image", False))
    images = viz.to_uint8_images(x) if is_image else viz.to_uint8_images(x, value_range=None)
    if is_image:
        arrays["images"] = images
    np.savez(out / "samples.npz", **arrays)
    if labels is not None and len(np.unique(labels.numpy())) > 1:
        # class-guided: one row per class (at most 16 samples each)
        lab = labels.numpy()
        classes = np.unique(lab)
        per = int(min(16, min((lab == c).sum() for c in classes)))
        picked = np.concatenate([np.flatnonzero(lab == c)[:per] for c in classes])
        grid_path = viz.save_grid(images[picked], out / "grid.png", nrow=per)
    else:
        grid_path = viz.save_grid(images[:64], out / "grid.png")

    # evolution: noise → data, thesis Fig. 4.1
    if first is not None and first.trajectory:
        reference = _reference_points(data, len(first.trajectory[0]))
        panels = [_points_or_images(data, snap) for snap in first.trajectory]
        viz.evolution_figure(panels, first.times, out / "evolution.png", rows=int(cfg.get("evolution_rows", 8)),
                             reference=reference, title=samplers.describe(sampler_cfg))

    metrics = {"nfe": float(np.mean(nfes)), "seconds": seconds, "samples_per_second": n / max(seconds, 1e-9)}
    compare = cfg.get("compare")
    if compare:
        metrics.update(compare_samplers(setup_obj, score_fn, list(compare), min(n, batch_size), out / "compare.png",
                                        progress=progress))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _log(cfg, metrics, grid_path)
    log.info("wrote %d samples to %s (NFE %s, %.1f s)", n, out, arrays["nfe"], seconds)
    return metrics


def compare_samplers(setup_obj: Setup, score_fn, names, n: int, path, *, progress=False) -> dict:
    """Final samples of each named sampler from the SAME initial noise (thesis Fig. 4.2)."""
    gen = setup_obj.generator()
    x_init = setup_obj.sde.prior_sample((n, *setup_obj.shape), generator=gen, device=setup_obj.device)
    panels, metrics = {}, {}
    for name in names:
        cfg = sampler_config(str(name))
        with torch.no_grad():
            result = samplers.sample(cfg, score_fn, setup_obj.sde, x_init.shape, x_init=x_init.clone(),
                                     generator=setup_obj.generator(), device=setup_obj.device, progress=progress)
        panel = _points_or_images(setup_obj.data, result.x.detach().float().cpu())
        panels[f"{name} ({result.nfe} NFE)"] = panel[:64] if getattr(setup_obj.data, "is_image", False) else panel
        metrics[f"compare/{name}/nfe"] = float(result.nfe)
    viz.comparison_figure(panels, path, reference=_reference_points(setup_obj.data, n), nrow=8)
    return metrics
