"""The typed config schema (``sdegen.runtime.schema``): every key of every command and group choice, with bad
inputs GENERATED FROM THE SCHEMA ITSELF (a wrong type, a value beyond each bound, an unknown choice, an
unknown key), each a one-line ``UserError`` naming the key and the value; a few of them through the CLI
(exit 2, one stderr line, nothing written); and the generated configuration reference kept in sync."""

import math
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sdegen.errors import UserError
from sdegen.runtime import schema
from sdegen.runtime.config import config_dir, group_choices

ROOT = Path(__file__).resolve().parents[1]


def homes():
    """``(command, overrides, config path, model)`` of every node model: the command's own keys, and every choice
    of every group at the key path where that command reads it."""
    yield "train", (), "", schema.Train
    yield "sample", (), "", schema.Sample
    yield "eval", (), "", schema.Eval
    yield "report", ("run_dir=runs",), "", schema.Report
    where = {
        "sampler": ("sample", "sampler"),
        "guidance": ("sample", "guidance"),
        "loss": ("train", "loss"),
        "task": ("sample", "task"),
        "schedule": ("train", "schedule"),
        "sde": ("train", "sde"),
        "model": ("train", "model"),
        "data": ("train", "data"),
    }
    for name, group in schema.GROUPS.items():
        models = group.models()
        command, path = where[name]
        for choice in group_choices(name):
            value = OmegaConf.load(config_dir() / name / f"{choice}.yaml").get(group.key)
            model = models.get(value, group.fallback)
            cmd = "train" if (name == "task" and choice == "classifier") else command
            yield cmd, (f"{name}={choice}",), path, model
    yield "train", (), "trainer", schema.Trainer


HOMES = list(homes())


@pytest.fixture(scope="module")
def configs():
    """The composed default config of each (command, overrides) of ``HOMES``."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return {
            (c, o): OmegaConf.to_container(compose(config_name=c, overrides=list(o)), resolve=True)
            for c, o, _, _ in HOMES
        }


def _lookup(data, path):
    for part in path.split(".") if path else []:
        data = data[part]
    return data


def _set(data, path, value):
    *parents, last = path.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


# --- bad values derived from a field's type ------------------------------------------------------------------
def _members(tp, meta=()):
    """The union members of a field's type as ``(base type, constraints)``, ``Annotated`` unwrapped."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *more = typing.get_args(tp)
        return _members(base, (*meta, *more))
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [(tp, meta)]


def _bounds(meta) -> dict:
    out = {}
    for m in meta:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(m, attr, None) is not None:
                out[attr] = getattr(m, attr)
        if hasattr(m, "metadata"):
            out.update(_bounds(m.metadata))
    return out


def _numeric_members(members):
    return [(tp, _bounds(meta)) for tp, meta in members if tp in (int, float)]


def _literals(members):
    return [v for tp, _ in members if typing.get_origin(tp) is typing.Literal for v in typing.get_args(tp)]


def _in(value, tp, b) -> bool:
    """Whether a number lies in a numeric member's range (my own reading of ge/gt/le/lt)."""
    if tp is int and not float(value).is_integer():
        return False
    return not (
        ("ge" in b and value < b["ge"])
        or ("gt" in b and value <= b["gt"])
        or ("le" in b and value > b["le"])
        or ("lt" in b and value >= b["lt"])
    )


def bad_values(field):
    """``(kind, value)`` pairs that the field's declared type excludes."""
    members = _members(field.annotation, tuple(field.metadata))
    kinds = {tp if typing.get_origin(tp) is None else typing.get_origin(tp) for tp, _ in members}
    literals = _literals(members)
    numeric = _numeric_members(members)
    has_text = str in kinds or any(isinstance(v, str) for v in literals)
    has_number = bool(numeric) or any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in literals)
    if not has_text:
        yield "type", "abc"
    elif not has_number and bool not in kinds:
        yield "type", 12345
    if bool not in kinds and numeric and True not in literals:
        yield "type", True
    for tp, b in numeric:
        step = 1 if tp is int else 0.5
        candidates = [
            b["ge"] - step if "ge" in b else None,
            b.get("gt"),
            b["le"] + step if "le" in b else None,
            b.get("lt"),
        ]
        for value in candidates:
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            value = int(value) if float(value).is_integer() and tp is int else value
            if value not in literals and not any(_in(value, t, bb) for t, bb in numeric):
                yield "range", value
    if not has_number and any(isinstance(v, str) for v in literals) and str not in kinds:
        yield "choice", "nope"


def leaves(model, prefix, data):
    """``(key path, field)`` of every typed key of ``model`` present in the config ``data``."""
    for key, field in schema._fields_by_key(model).items():
        if key not in data or field.annotation is typing.Any or key == "_target_" and prefix:
            continue
        inner = schema._inner_model(field)
        if inner is not None and isinstance(data[key], dict):
            yield from leaves(inner, f"{prefix}{key}.", data[key])
        elif inner is None:
            yield f"{prefix}{key}", field


def cases(configs, command, overrides, path, model):
    """``(key, kind, value)`` of every generated bad input of one node."""
    node = _lookup(configs[command, overrides], path)
    for key, field in leaves(model, f"{path}." if path else "", node):
        for kind, value in bad_values(field):
            yield key, kind, value


HOME_IDS = [f"{h[0]}-{'-'.join(h[1]) or 'defaults'}-{h[3].__name__}" for h in HOMES]


def test_the_generated_table_covers_every_kind(configs):
    found = [case for home in HOMES for case in cases(configs, *home)]
    assert {kind for _, kind, _ in found} == {"type", "range", "choice"} and len(found) > 300, len(found)


@pytest.mark.parametrize("command, overrides, path, model", HOMES, ids=HOME_IDS)
def test_every_bad_value_is_one_line_naming_key_and_value(configs, command, overrides, path, model):
    """For each key of the node: a wrong type, each bound crossed and an unknown choice, generated from the
    schema's own types; each must be a one-line UserError `KEY must be ALLOWED (got VALUE)`."""
    wrong = []
    tried = 0
    for key, kind, value in cases(configs, command, overrides, path, model):
        data = _copy(configs[command, overrides])
        _set(data, key, value)
        tried += 1
        try:
            schema.validate(data, command)
            wrong.append(f"{key}={value!r} ({kind}) accepted")
        except UserError as err:
            message = str(err)
            if not re.fullmatch(rf"{re.escape(key)} must be .+ \(got {re.escape(schema.show(value))}\)", message):
                wrong.append(f"{key}={value!r} ({kind}): {message}")
    assert tried > 0 or model in (schema.GMMScore, schema.NoGuidance, schema.GenerateTask)
    assert not wrong, "\n".join(wrong)


def _copy(data):
    import copy

    return copy.deepcopy(data)


@pytest.mark.parametrize("command, overrides, path, model", HOMES, ids=HOME_IDS)
def test_defaults_pass_and_an_unknown_key_fails(configs, command, overrides, path, model):
    data = _copy(configs[command, overrides])
    assert schema.problems(data, command) == []
    node = _lookup(data, path)
    node["bogus_key"] = 1
    if issubclass(model, schema.OpenNode) or model is schema.OtherSampler:
        return  # other keys are checked against the code that reads them (lightning.Trainer, the function)
    with pytest.raises(UserError, match=rf"^{re.escape(path + '.' if path else '')}bogus_key is not a config key"):
        schema.validate(data, command)


@pytest.mark.parametrize("group", ["sde", "schedule", "model", "data", "sampler"])
def test_a_target_outside_the_configs_is_refused(configs, group):
    data = _copy(configs["sample", ()])
    data[group]["_target_"] = "builtins.open"
    with pytest.raises(UserError, match=rf"^{group}\._target_ must be one of .* \(got 'builtins\.open'\)$"):
        schema.validate(data, "sample")


def test_every_config_choice_has_a_schema():
    for name, group in schema.GROUPS.items():
        for choice in group_choices(name):
            value = OmegaConf.load(config_dir() / name / f"{choice}.yaml").get(group.key)
            assert value in group.models(), f"{name}={choice}: no schema model for {group.key}={value}"


def test_size_like_values_are_bounded():
    """No input can run for hours before its first line: steps, sample counts and batch sizes have a ceiling."""
    for model, key in (
        (schema.EM, "steps"),
        (schema.Sample, "n_samples"),
        (schema.Sample, "batch_size"),
        (schema.EmbeddedMNIST, "batch_size"),
        (schema.BPD, "n_points"),
        (schema.Eval, "n_samples"),
    ):
        assert "le" in _bounds(model.model_fields[key].metadata), (model.__name__, key)


def test_stored_configs_are_validated_with_older_spellings_mapped(configs):
    stored = _copy(configs["train", ()])
    stored["loss"] = {"weighting": "edm", "reduction": "mean", "sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2}
    stored["sample_grid"]["sampler"]["by_steps"] = [{"max_steps": 5}]
    upgraded = schema.validate_stored(stored)
    assert upgraded["loss"] == {"name": "edm", "reduction": "mean", "data_std": 0.5, "p_mean": -1.2, "p_std": 1.2}
    assert "by_steps" not in upgraded["sample_grid"]["sampler"] and "weighting" in stored["loss"]  # a copy
    stored["loss"] = {"weighting": "sigma2", "reduction": "mean", "sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2}
    assert schema.validate_stored(stored)["loss"] == {"name": "sigma2", "reduction": "mean"}
    stored["model"]["_target_"] = "os.system"
    with pytest.raises(UserError, match=r"^x\.ckpt: stored config: model\._target_ must be one of .*'os\.system'"):
        schema.validate_stored(stored, source="x.ckpt")
    with pytest.raises(UserError, match="not a mapping"):
        schema.validate_stored(["not", "a", "dict"])


def test_an_integral_float_counts_as_an_integer_and_a_fraction_does_not(configs):
    data = _copy(configs["sample", ()])
    data["sampler"]["steps"] = 1e3
    schema.validate(data, "sample")
    data["sampler"]["steps"] = 2.5
    with pytest.raises(UserError, match=r"^sampler\.steps must be an integer >= 1 and <= 100000 \(got 2\.5\)$"):
        schema.validate(data, "sample")


def test_configuration_reference_is_up_to_date():
    """docs/configuration.md is generated: `python -m sdegen.runtime.schema --markdown > docs/configuration.md`."""
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == schema.markdown(), (
        "docs/configuration.md is out of date: python -m sdegen.runtime.schema --markdown > docs/configuration.md"
    )
    for word, _ in schema.VOCABULARY:
        assert f"**{word}**" in page.read_text(encoding="utf-8")


# --- through the CLI: exit 2, one line, no traceback, nothing written ------------------------------------------
CLI_CASES = [
    ("sample sampler.steps=2.5", r"sampler\.steps must be an integer >= 1 and <= 100000 \(got 2\.5\)"),
    ("train seed=abc", r"seed must be an integer >= 0 and <= 4294967295 \(got 'abc'\)"),
    ("sample task=inpaint task.mask.kind=circle", r"task\.mask\.kind must be one of box, half, random, file, mnist"),
    ("eval eval.bpd.rtol=-1", r"eval\.bpd\.rtol must be a number > 0 and < 1 \(got -1\)"),
    ("train -m loss=sigma2 sde=vp,subvp optim.warmup=-5", r"optim\.warmup must be an integer >= 0 .*\(got -5\)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, pattern", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_value_is_one_line_and_writes_nothing(tmp_path, args, pattern):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sdegen",
            *args.split(),
            f"hydra.run.dir={tmp_path / 'run'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.match(rf"sdegen: error: {pattern}", lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing may be written (no run folder, no .hydra/, no cli.log)"
