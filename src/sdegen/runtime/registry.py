"""The objects sdegen builds from a config: the ``_target_``s of its own ``configs/`` and nothing else.

A config (composed from ``configs/``, stored in a checkpoint, read from a run folder) is plain data.
Every ``_target_`` in it must be one of the dotted paths found in ``configs/**/*.yaml`` (the registry,
``targets()``); only those paths are ever imported.  ``build(node, **kwargs)`` checks every
``_target_`` anywhere in ``node`` before anything is imported or called, then instantiates; ``get(target)``
is the object of one registered path (a sampler function, a model class).  Any other target is a
``UserError`` naming the key and the value, so a shared checkpoint whose config says
``_target_: builtins.open`` fails in one line with no effect.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from ..errors import UserError

#: the key that names what a config node builds
TARGET = "_target_"


def config_dir() -> Path:
    """Configs ship inside the wheel (``sdegen/configs``); an editable install uses the repo's."""
    packaged = Path(str(importlib.resources.files("sdegen"))) / "configs"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "configs"
    if repo.is_dir():
        return repo
    raise UserError("cannot find the configs folder (reinstall the package)")


#: the task choices each command can run (one `task` group, validated per command)
TASKS = {
    "train": ("generate", "classifier"),
    "sample": ("generate", "inpaint", "colorize"),
    "eval": ("generate", "classifier"),
    "report": (),
}


def group_choices(group: str) -> list[str]:
    """The choices of a config group: the YAML files of ``configs/<group>/``."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _walk(node, path: str):
    """``(key path, value)`` of every ``_target_`` in ``node`` (mappings and lists, any depth)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == TARGET:
                yield where, value
            else:
                yield from _walk(value, where)
    elif isinstance(node, Sequence) and not isinstance(node, (str, bytes)):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@functools.cache
def targets() -> dict[str, str]:
    """``{dotted path: config group}`` of every ``_target_`` in ``configs/**/*.yaml`` (read as plain YAML)."""
    root = config_dir()
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        group = path.parent.relative_to(root).as_posix()
        for _, value in _walk(data, ""):
            if isinstance(value, str):
                found.setdefault(value, group if group != "." else path.stem)
    return found


def _message(key: str, value) -> str:
    group = key.rsplit(".", 2)[-2] if key.count(".") >= 1 else ""
    allowed = sorted(t for t, g in targets().items() if g.rsplit("/", 1)[-1] == group.split("[", 1)[0])
    hint = f"allowed here: {', '.join(allowed)}" if allowed else "only the _target_s of sdegen's configs/ are built"
    return f"{key}={value!r} is not an object sdegen builds ({hint})"


def check(node, where: str = "") -> None:
    """``UserError`` for the first ``_target_`` in ``node`` that is not in the registry (nothing is imported).
    ``where``: the key path of ``node`` in its config, for the message (``"model"``, ``"sde"``)."""
    for key, value in _walk(node, where):
        if not isinstance(value, str) or value not in targets():
            raise UserError(_message(key, value))


def get(target, key: str = TARGET):
    """The object a registered dotted path names (imported only after the check); ``key`` names it in errors."""
    if not isinstance(target, str) or target not in targets():
        raise UserError(_message(key, target))
    import hydra.utils

    try:
        return hydra.utils.get_object(target)
    except Exception as err:  # noqa: BLE001 - Hydra wraps ImportError/AttributeError in its own types
        raise UserError(f"{key}={target!r} cannot be imported ({type(err).__name__}); reinstall sdegen") from None


def build(node, where: str = "", **kwargs):
    """``hydra.utils.instantiate(node, **kwargs)`` once every ``_target_`` in ``node`` (and in any config
    passed in ``kwargs``) is in the registry.  ``where``: the node's key path, for error messages."""
    import hydra.utils

    check(node, where)
    for name, value in kwargs.items():
        if isinstance(value, (Mapping, list)) or _is_config(value):
            check(value, f"{where}.{name}" if where else name)
    return hydra.utils.instantiate(node, **kwargs)


def _is_config(value) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.is_config(value)
