"""``build_setup(cfg)``: what every sampling command needs, built once: the SDE, the score model (from
``ckpt=`` or the configured model, e.g. the exact test bed ``model=gmm``), the data module and the
device; plus the guided score function (``guidance=``) and the checks that go with them."""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from . import registry
from .checkpoints import load_classifier, load_score_model
from .config import build_sde
from .device import resolve_device

#: config groups a checkpoint fixes; overriding them on the command line with other values is refused
CHECKPOINT_GROUPS = ("sde", "schedule", "model", "data")
#: model constructor arguments that the code passes (not config keys)
MODEL_RUNTIME_ARGS = {"self", "sde", "data", "shape", "num_classes"}

log = logging.getLogger("sdegen")


@dataclass
class Setup:
    """The SDE, the score model (eval mode, on ``device``), the data module (shape, num_classes,
    is_image, scale/unscale), the device and, when loaded from one, the checkpoint's config."""

    cfg: Any
    sde: Any
    score_model: torch.nn.Module
    data: Any
    device: torch.device
    ckpt_cfg: dict | None = None

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @functools.cached_property
    def data_std(self) -> float | None:
        """The data's root-mean-square per-dimension std in model space: the checkpoint's (recorded at
        training), else the data module's (``data=gmm``: exact; images: from the training split), else
        None (the samplers then assume EDM's 0.5).  Looked up only by samplers whose grid follows it."""
        stored = ((self.ckpt_cfg or {}).get("data_info") or {}).get("data_std")
        if stored is not None:
            return float(stored)
        if not hasattr(self.data, "data_std"):
            return None
        try:
            return float(self.data.data_std())
        except (UserError, OSError, RuntimeError, ValueError) as err:
            log.warning(
                f"the data's std could not be read ({err}); the focus grid assumes 0.5 "
                f"(set sampler.data_std to the data's std)"
            )
            return None

    def sampler(self, sampler_cfg):
        """The configured sampler, built once (``samplers.build``: ``auto`` resolved, every key checked), with
        the data's std when its grid follows the data's scale."""
        from .. import samplers

        sampler = samplers.build(sampler_cfg)
        return sampler.with_data_std(self.data_std) if sampler.needs_data_std else sampler

    def generator(self, seed: int | None = None) -> torch.Generator:
        """A torch.Generator on the device seeded with ``seed`` (default: cfg.seed)."""
        seed = int(self.cfg.get("seed", 0) if seed is None else seed)
        return torch.Generator(device=self.device).manual_seed(seed)


def cli_overrides() -> list[str]:
    """Keys the user set on the command line (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task if "=" in o]


def _describe(node) -> str:
    if isinstance(node, dict):
        target = node.get("_target_", "?")
        args = {k: v for k, v in node.items() if k != "_target_" and not isinstance(v, dict)}
        return f"{target.rsplit('.', 1)[-1]}({', '.join(f'{k}={v}' for k, v in args.items())})"
    return repr(node)


def checkpoint_conflicts(cfg, ckpt_cfg: dict, overridden: list[str]) -> list[str]:
    """One message per config group the user chose explicitly that differs from the checkpoint's."""
    chosen = {key.split(".", 1)[0].split("/", 1)[0] for key in overridden}
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


def refuse_conflicts(cfg, ckpt_cfg: dict, source) -> None:
    conflicts = checkpoint_conflicts(cfg, ckpt_cfg, cli_overrides())
    if conflicts:
        raise UserError(
            f"{Path(str(source)).name} does not match the command line ({'; '.join(conflicts)}); "
            f"drop those overrides to use the checkpoint's own config"
        )


def check_model_args(model_cfg) -> None:
    """Every key of ``cfg.model`` must be a parameter of the model's constructor (models accept
    ``**_``, so a typo would otherwise be dropped silently)."""
    if model_cfg is None or "_target_" not in model_cfg:
        return
    target = model_cfg["_target_"]
    fn = registry.get(target, "model._target_")
    params = inspect.signature(fn).parameters
    valid = sorted(k for k, p in params.items() if k not in MODEL_RUNTIME_ARGS and p.kind is not p.VAR_KEYWORD)
    unknown = [k for k in model_cfg if not k.startswith("_") and k not in valid]
    if unknown:
        name = str(target).rsplit(".", 1)[-1]
        raise UserError(f"model.{unknown[0]} is not an argument of {name}; valid: {', '.join(valid) or '(none)'}")


def build_data(data_cfg):
    """The data module (nothing is read until it is used), built from sdegen's registry of targets."""
    return registry.build(data_cfg, "data", _convert_="all")


def build_setup(cfg) -> Setup:
    """Build (sde, score_model, data, device) from ``cfg`` or from the checkpoint ``cfg.ckpt``."""
    device = resolve_device(cfg.get("device", "auto"))
    ckpt = cfg.get("ckpt")
    if not ckpt:
        check_model_args(cfg.get("model"))
        data = build_data(cfg.data)
        sde = build_sde(cfg)
        model = registry.build(cfg.model, "model", sde=sde, data=data)
        ckpt_cfg = None
    else:
        model, ckpt_cfg = load_score_model(str(ckpt), map_location=device)
        refuse_conflicts(cfg, ckpt_cfg, ckpt)
        stored = OmegaConf.create({k: v for k, v in ckpt_cfg.items() if k != "data_info"})
        data = build_data(stored.data)
        sde = build_sde(stored)
    return Setup(cfg=cfg, sde=sde, score_model=model.to(device).eval(), data=data, device=device, ckpt_cfg=ckpt_cfg)


def guided_score(cfg, setup: Setup):
    """The score function the sampler uses: the model itself, or its ``guidance=`` transform."""
    from ..guidance import apply_guidance

    guidance = cfg.get("guidance")
    classifier = None
    if guidance is not None and guidance.get("classifier_ckpt"):
        classifier, plain = load_classifier(guidance.classifier_ckpt, map_location=setup.device)
        trained = (plain.get("sde") or {}).get("_target_", "")
        if trained and trained.rsplit(".", 1)[-1] != type(setup.sde).__name__:
            raise UserError(
                f"guidance.classifier_ckpt was trained on {trained.rsplit('.', 1)[-1]} noise but the "
                f"score model uses {type(setup.sde).__name__}; train the classifier with the same sde="
            )
    return apply_guidance(guidance, setup.score_model, setup.sde, setup.data, setup.device, classifier=classifier)
