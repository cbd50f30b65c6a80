"""The import graph points down only: sde → models → data, samplers → guidance, tasks, metrics, training,
report, viz → runtime → commands → cli; no command imports another; no importlib indirection."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sdegen"

#: layer of each top-level part of the package (a module may import only lower layers or its own part)
LAYERS = {
    "errors": 0,
    "sde": 1,
    "models": 2,
    "data": 3, "samplers": 3,
    "guidance": 4, "tasks": 4, "metrics": 4, "training": 4, "report": 4, "viz": 4,
    "runtime": 5,
    "commands": 6, "bench": 6,  # bench: building blocks of scripts/bench_*.py, imported by nothing in sdegen
    "cli": 7, "__main__": 8, "__init__": 8,
}
#: imports across parts of the same layer that are fine: pure functions, no orchestration
SAME_LAYER_OK = {("tasks", "metrics.distances"), ("training", "viz")}


def part_of(module: str) -> str:
    return module.split(".")[0]


def sdegen_imports(path: Path):
    """(line, imported module relative to sdegen) for every import of sdegen inside ``path``."""
    rel = path.relative_to(SRC).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sdegen."):
                    yield node.lineno, alias.name.removeprefix("sdegen.")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
                names = [target] if node.module else [".".join([*base, a.name]) for a in node.names]
                for name in names:
                    yield node.lineno, name
            elif node.module == "sdegen":
                for a in node.names:
                    yield node.lineno, a.name
            elif node.module and node.module.startswith("sdegen."):
                yield node.lineno, node.module.removeprefix("sdegen.")


def modules():
    return sorted(p for p in SRC.rglob("*.py"))


def test_the_layer_table_covers_every_part():
    parts = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in modules()}
    assert parts <= set(LAYERS), parts - set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    me = path.relative_to(SRC).parts[0].removesuffix(".py")
    bad = []
    for line, target in sdegen_imports(path):
        other = part_of(target)
        if other == me:
            if me == "commands" and target.split(".")[1:2] and path.stem != "__init__" \
                    and target.split(".")[1] != path.stem:
                bad.append(f"line {line}: commands.{path.stem} imports another command: {target}")
            continue
        if other not in LAYERS:
            continue  # e.g. `from sdegen import cli` style names resolved below
        if LAYERS[other] > LAYERS[me]:
            bad.append(f"line {line}: {me} (layer {LAYERS[me]}) imports {target} (layer {LAYERS[other]})")
        elif LAYERS[other] == LAYERS[me] and not any(me == a and target.startswith(b) for a, b in SAME_LAYER_OK):
            bad.append(f"line {line}: {me} imports {target} of the same layer")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_importlib_indirection(path):
    tree = ast.parse(path.read_text())
    used = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "import_module"]
    assert not used, f"importlib.import_module at lines {used}"


def test_the_checker_sees_an_upward_and_a_cross_command_import(tmp_path, monkeypatch):
    """A test that cannot fail is a defect: plant bad imports and see them reported."""
    fake = SRC / "commands" / "_layer_probe.py"
    fake.write_text("from ..cli import main\nfrom . import train\nfrom .sample import main as m\n")
    try:
        found = [t for _, t in sdegen_imports(fake)]
        assert found == ["cli", "commands.train", "commands.sample"]
        with pytest.raises(AssertionError, match="imports another command"):
            test_imports_point_down(fake)
    finally:
        fake.unlink()
    probe = SRC / "sde" / "_layer_probe.py"
    probe.write_text("from ..runtime.config import build_sde\n")
    try:
        with pytest.raises(AssertionError, match="sde \\(layer 1\\) imports runtime.config"):
            test_imports_point_down(probe)
    finally:
        probe.unlink()
