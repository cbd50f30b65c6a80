"""Checkpoints: atomic saving, finding the newest loadable one, loading score models and classifiers.

A checkpoint of ``sdegen train`` is a Lightning checkpoint whose ``state_dict`` holds the EMA
weights (``EMAWeightAveraging`` puts the raw ones under ``current_model_state``) and whose
``sdegen`` entry holds the resolved config, the data shape and the kind (``score`` or
``classifier``) as plain data, so it loads with ``torch.load(..., weights_only=True)`` and without
the training data.

Saving writes a temporary file in the same folder, flushes and fsyncs it, then ``os.replace``-s it
over the target (atomic on every POSIX file system, tmpfs included), so a killed run or a full disk
never leaves a truncated ``last.ckpt``.  Loading (``resume=``, ``ckpt=``, ``guidance.classifier_ckpt=``)
reads a named file or nothing; given a run folder it falls back from an unreadable ``last.ckpt`` to the
run's newest periodic checkpoint that loads, with a one-line warning.  A stored config is data: its
``_target_``s must be in ``runtime.registry`` before any object is built from it (``check_stored``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from ..errors import UserError

log = logging.getLogger("sdegen")


# --- saving ----------------------------------------------------------------------------------------
def atomic_save(obj, path) -> None:
    """``torch.save`` to a temporary file next to ``path``, flush + fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not err.filename:
            err.filename = str(path)  # a write through a file object names no file: say which one it was
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with ``atomic_save`` (its own is a plain write on local paths)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_save(checkpoint, path)


# --- finding ---------------------------------------------------------------------------------------
def _step_of(path: Path) -> int:
    match = re.search(r"(\d+)", path.stem)
    return int(match.group(1)) if match else -1


def candidates(path) -> list[Path]:
    """Checkpoint files for ``path``, best first.  A file is that file alone.  A run folder (or its
    ``checkpoints/`` folder) gives ``last.ckpt`` then the run's periodic ``step_*.ckpt``, newest first:
    the ones a fallback may use when ``last.ckpt`` is unreadable."""
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise UserError(f"no checkpoint or run folder at {path}")
    if path.is_file():
        return [path]
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    first = [folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else []
    periodic = sorted(
        (p for p in folder.glob("step_*.ckpt") if p.is_file()),
        key=lambda p: (_step_of(p), p.stat().st_mtime),
        reverse=True,
    )
    found = first + periodic
    if not found:
        others = sorted(p.name for p in folder.glob("*.ckpt"))
        if others:
            raise UserError(f"no last.ckpt or step_*.ckpt in {folder}; name the file itself, e.g. {folder / others[0]}")
        raise UserError(f"no *.ckpt file in {folder} (give a checkpoint file or a `sdegen train` run folder)")
    return found


def _read(path: Path, map_location="cpu") -> dict:
    """``torch.load(weights_only=True)``; a file that is not a readable checkpoint is a ``UserError``."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, random, empty or foreign files all end here
        raise UserError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: truncated, empty or not "
            f"written by `sdegen train`)"
        ) from None
    info = checkpoint.get("sdegen") if isinstance(checkpoint, dict) else None
    if not isinstance(info, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a checkpoint written by `sdegen train`")
    return checkpoint


def check_stored(checkpoint: dict, file) -> None:
    """The stored config is plain data that sdegen may build: a mapping whose every ``_target_`` is in
    ``runtime.registry`` (nothing is imported or called for a target that is not), valid by the schema
    (``checkpoint["sdegen"]["cfg"]`` becomes the validated config, older spellings mapped).  Every config
    read from a checkpoint passes here before any object is built from it."""
    from . import registry

    info = checkpoint["sdegen"]
    cfg, data = info.get("cfg"), info.get("data")
    if not isinstance(cfg, dict) or not isinstance(data, dict):
        raise UserError(f"{file} is not a checkpoint written by `sdegen train` (its stored config is not a mapping)")
    try:
        registry.check(cfg)
        registry.check(data, "data_info")
    except UserError as err:
        raise UserError(f"{file}: stored config {err}") from None
    info["cfg"] = _validate_schema({k: v for k, v in cfg.items() if k not in LEGACY_KEYS}, file)


#: top-level keys of stored configs that are provenance, not settings (dropped on read)
LEGACY_KEYS = ("resumed_from",)


def _validate_schema(cfg: dict, file) -> dict:
    """The stored config checked by the typed schema (``runtime.schema.validate_stored``: older spellings
    mapped to the current keys), or a one-line ``UserError``."""
    from .schema import validate_stored

    return validate_stored(cfg, source=str(file))


def find_checkpoint(path, map_location="cpu", kind: str | None = None) -> tuple[Path, dict]:
    """``(file, checkpoint)``.  A file: that file, or a one-line ``UserError``.  A run folder: the first of
    ``candidates(path)`` that loads, with one warning line naming the unreadable ``last.ckpt`` and the
    fallback.  The checkpoint must be of ``kind`` (when given) and its stored config passes ``check_stored``."""
    files = candidates(path)
    first_error = None
    for file in files:
        try:
            checkpoint = _read(file, map_location)
        except UserError as err:
            first_error = first_error or err
            continue
        if kind is not None and checkpoint["sdegen"].get("kind", "score") != kind:
            raise UserError(_kind_message(file, checkpoint["sdegen"].get("kind", "score"), kind))
        check_stored(checkpoint, file)
        if file != files[0]:
            message = (
                f"sdegen: warning: {files[0]} is unreadable; using {file.name} (step {checkpoint.get('global_step')})"
            )
            print(message, file=sys.stderr, flush=True)  # once on the console; the run's cli.log gets it too
            text = message.removeprefix("sdegen: ")
            record = log.makeRecord(log.name, logging.WARNING, __file__, 0, text, None, None)
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.handle(record)
        return file, checkpoint
    if len(files) == 1:
        raise first_error
    raise UserError(f"none of the {len(files)} checkpoints in {files[0].parent} is readable ({first_error})")


def _kind_message(file, found, wanted) -> str:
    if wanted == "score":
        return (
            f"{file} is a {found} checkpoint, not a score model; pass it as guidance.classifier_ckpt=... "
            f"or eval.classifier_ckpt=..., and ckpt= a `sdegen train` score-model run"
        )
    return f"{file} is a {found} checkpoint, not a {wanted} (train one with `sdegen train task=classifier`)"


def model_state(checkpoint: dict, prefix: str = "model.", ema: bool = True) -> dict:
    """The network's weights (EMA ones unless ``ema=False``) without the module prefix."""
    raw = not ema and "current_model_state" in checkpoint
    state = checkpoint["current_model_state"] if raw else checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def stored_config(checkpoint: dict) -> dict:
    """The run's config as plain data, with ``cfg["data_info"]`` (shape, num_classes, is_image, scaling)."""
    info = checkpoint["sdegen"]
    cfg = dict(info["cfg"])
    cfg["data_info"] = dict(info["data"])
    return cfg


def _load_weights(model, state: dict, file) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{file}: the weights do not fit the model its config describes ({first[:120]})") from None


def _device_of(map_location):
    return map_location if isinstance(map_location, (str, torch.device)) else "cpu"


def load_score_model(path, map_location="cpu", ema: bool = True):
    """``(model, cfg)``: the score network in eval mode with its EMA weights, and the run's config
    as plain data (``cfg["data"]``/``cfg["sde"]``... as composed, plus ``cfg["data_info"]``).
    ``model(x, t, y=None)`` is the score.  ``path``: a file or run folder (newest loadable checkpoint)."""
    from . import registry
    from .config import build_sde

    file, checkpoint = find_checkpoint(path, map_location, kind="score")
    cfg = stored_config(checkpoint)
    if not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("sde"), dict):
        raise UserError(f"{file} is not a checkpoint written by `sdegen train` (its stored config has no model/sde)")
    sde = build_sde(OmegaConf.create({k: v for k, v in cfg.items() if k in ("sde", "schedule")}))
    data = SimpleNamespace(**cfg["data_info"])
    model = registry.build(OmegaConf.create(cfg["model"]), "model", sde=sde, data=data, _convert_="all")
    _load_weights(model, model_state(checkpoint, ema=ema), file)
    return model.to(_device_of(map_location)).eval(), cfg


def load_classifier(path, map_location="cpu"):
    """``(model, cfg)``: the time-dependent classifier (eval mode, EMA weights when trained with EMA)
    and the run's config as plain data.  ``model(x, t) -> logits``."""
    from ..training.classifier import build_classifier
    from .config import build_sde

    file, checkpoint = find_checkpoint(path, map_location, kind="classifier")
    cfg = stored_config(checkpoint)
    sde = build_sde(OmegaConf.create({k: cfg[k] for k in ("sde", "schedule") if k in cfg}))
    model = build_classifier(
        cfg["task"].get("model") or {}, sde, cfg["data_info"]["shape"], cfg["data_info"]["num_classes"]
    )
    _load_weights(model, model_state(checkpoint), file)
    return model.to(_device_of(map_location)).eval(), cfg
