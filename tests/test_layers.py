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
    "data": 3,
    "samplers": 3,
    "guidance": 4,
    "tasks": 4,
    "metrics": 4,
    "training": 4,
    "report": 4,
    "viz": 4,
    "runtime": 5,
    "commands": 6,
    "bench": 6,  # bench: building blocks of scripts/bench_*.py, imported by nothing in sdegen
    "cli": 7,
    "__main__": 8,
    "__init__": 8,
}
#: imports across parts of the same layer that are fine: pure functions, no orchestration
SAME_LAYER_OK = {("tasks", "metrics.distances"), ("training", "viz")}


def part_of(module: str) -> str:
    return module.split(".")[0]


def imports_in(source: str, rel: Path):
    """(line, imported name relative to sdegen) for every import of sdegen in ``source``, the text of the
    module at ``rel`` (its path relative to ``src/sdegen``), including imports inside functions."""
    package = list(rel.with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(source)):
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


def sdegen_imports(path: Path):
    return imports_in(path.read_text(), path.relative_to(SRC))


def modules():
    return sorted(p for p in SRC.rglob("*.py"))


def test_the_layer_table_covers_every_part():
    parts = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in modules()}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def layer_violations(rel: Path, source: str) -> list[str]:
    """Upward, same-layer and cross-command imports of the module at ``rel`` with text ``source``."""
    me = rel.parts[0].removesuffix(".py")
    bad = []
    for line, target in imports_in(source, rel):
        other = part_of(target)
        if other == me:
            if (
                me == "commands"
                and target.split(".")[1:2]
                and rel.stem != "__init__"
                and target.split(".")[1] != rel.stem
            ):
                bad.append(f"line {line}: commands.{rel.stem} imports another command: {target}")
            continue
        if other not in LAYERS:
            continue  # e.g. `from sdegen import cli` style names resolved below
        if LAYERS[other] > LAYERS[me]:
            bad.append(f"line {line}: {me} (layer {LAYERS[me]}) imports {target} (layer {LAYERS[other]})")
        elif LAYERS[other] == LAYERS[me] and not any(me == a and target.startswith(b) for a, b in SAME_LAYER_OK):
            bad.append(f"line {line}: {me} imports {target} of the same layer")
    return bad


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    bad = layer_violations(path.relative_to(SRC), path.read_text())
    assert not bad, "\n".join(bad)


def module_name(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(sources: dict) -> dict:
    """module -> the sdegen modules it imports (anywhere in its text), for ``sources``: {rel path: text}.
    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``."""
    known = {module_name(rel) for rel in sources}
    graph = {}
    for rel, text in sources.items():
        me = module_name(rel)
        targets = set()
        for _, name in imports_in(text, rel):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != me:
                targets.add(name)
        graph[me] = targets
    return graph


def import_circles(graph: dict) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each is an import circle."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles():
    sources = {p.relative_to(SRC): p.read_text() for p in modules()}
    circles = import_circles(import_graph(sources))
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_importlib_indirection(path):
    tree = ast.parse(path.read_text())
    used = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "import_module"]
    assert not used, f"importlib.import_module at lines {used}"


def test_the_checker_sees_an_upward_and_a_cross_command_import():
    """A test that cannot fail is a defect: bad imports in in-memory sources are reported."""
    probe = Path("commands") / "_layer_probe.py"
    source = "from ..cli import main\nfrom . import train\nfrom .sample import main as m\n"
    assert [t for _, t in imports_in(source, probe)] == ["cli", "commands.train", "commands.sample"]
    assert any("imports another command" in b for b in layer_violations(probe, source))
    bad = layer_violations(Path("sde") / "_layer_probe.py", "def f():\n    from ..runtime.config import build_sde\n")
    assert bad == ["line 2: sde (layer 1) imports runtime.config (layer 5)"]


def test_the_checker_sees_an_import_circle():
    sources = {
        Path("metrics") / "a.py": "from .b import f\n",
        Path("metrics") / "b.py": "def g():\n    from . import a\n",
        Path("metrics") / "c.py": "from sdegen.metrics import a\n",
        Path("metrics") / "__init__.py": "",
    }
    assert import_circles(import_graph(sources)) == [["metrics.a", "metrics.b"]]
    assert import_circles(import_graph({k: v for k, v in sources.items() if k.name != "b.py"})) == []
