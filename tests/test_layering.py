"""The package's layering (docs/design.md): every import in src/liftpool goes to the same layer or below, no cycles.

Walks every module of ``src/liftpool`` with :mod:`ast` (imports at any depth, also inside
functions), resolves each import to a ``liftpool`` module and checks it against the layer
table below.  Modules loaded by name (``importlib.import_module("...")``: the CLI's
subcommands, the pooling registry's plugins, the package's lazy ``__getattr__``) are not
imports in this sense.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: (layer number, name, module prefixes); a module belongs to the most specific matching prefix.
LAYERS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (0, "utilities", ("liftpool.constants", "liftpool._checks", "liftpool.io")),
    (1, "operator maths", ("liftpool.functional", "liftpool.lifters")),
    (2, "kernels", ("liftpool.kernels",)),
    (3, "layers, losses", ("liftpool.layers", "liftpool.losses")),
    (4, "pooling", ("liftpool.pooling",)),
    (5, "convert, models, package API", ("liftpool.convert", "liftpool.models", "liftpool")),
    (6, "data, training, viz", ("liftpool.data", "liftpool.training", "liftpool.training.diagnostics", "liftpool.viz")),
    (7, "evaluation", ("liftpool.evaluation",)),
    (
        8,
        "studies, testing",
        ("liftpool.studies", "liftpool.studies.reproduce_xl", "liftpool.studies.diagnosis", "liftpool.testing"),
    ),
    (9, "cli", ("liftpool.cli", "liftpool.__main__")),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path, package: str = "liftpool") -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` file of ``package`` under ``root``."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def layer_of(module: str, layers: tuple[tuple[int, str, tuple[str, ...]], ...] = LAYERS) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for number, _, prefixes in layers:
        for prefix in prefixes:
            # the top-level package name matches only itself; dotted prefixes also match their submodules
            if module == prefix or ("." in prefix and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), number)
    if best is None:
        raise LookupError(f"module {module} is in no layer of the table; add it to LAYERS and docs/design.md")
    return best[1]


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``liftpool`` modules that ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                targets.append(sub if sub in modules else target)
        else:
            continue
        for t in targets:
            # the deepest liftpool module named by the import
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != module:
                found.add(t)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = discover(root)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def back_imports(
    graph: dict[str, set[str]], layers: tuple[tuple[int, str, tuple[str, ...]], ...] = LAYERS
) -> list[str]:
    """One line per import that goes to a higher layer."""
    out = []
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            if layer_of(t, layers) > layer_of(m, layers):
                out.append(f"{m} (layer {layer_of(m, layers)}) imports {t} (layer {layer_of(t, layers)})")
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list ``[a, b, ..., a]`` of modules importing each other in a circle, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                cycle = visit(t)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


# ----------------------------------------------------------------------------- the package


def test_every_module_has_a_layer():
    for m in discover(SRC):
        layer_of(m)


def test_no_module_imports_from_a_higher_layer():
    bad = back_imports(import_graph(SRC))
    assert not bad, "imports against the layering of docs/design.md:\n" + "\n".join(bad)


def test_no_import_cycle():
    cycle = find_cycle(import_graph(SRC))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_walk_sees_the_known_edges():
    graph = import_graph(SRC)
    # relative, aliased and function-level imports all resolve to modules
    assert "liftpool.kernels" in graph["liftpool.layers"]
    assert "liftpool.functional" in graph["liftpool.layers"]  # from . import functional as LF
    assert "liftpool.kernels.eager" in graph["liftpool.kernels"]
    assert "liftpool.models" in graph["liftpool.studies.conversion"]  # imported inside a function
    assert "liftpool.kernels.eager" not in graph["liftpool.layers"]  # layers go through the dispatch point


# ----------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


TOY = {
    "liftpool/__init__.py": "from .layers import Layer\n",
    "liftpool/functional.py": "import math\n",
    "liftpool/layers.py": "from . import functional as LF\nclass Layer: ...\n",
    "liftpool/models/__init__.py": "from .net import Net\n",
    "liftpool/models/net.py": "from ..layers import Layer\nclass Net: ...\n",
}


def test_checker_accepts_a_clean_tree(tmp_path):
    _write(tmp_path, TOY)
    graph = import_graph(tmp_path)
    assert graph["liftpool.models.net"] == {"liftpool.layers"}
    assert back_imports(graph) == [] and find_cycle(graph) is None


@pytest.mark.parametrize("plant", ["from .models import Net\n", "def f():\n    from .models.net import Net\n"])
def test_checker_flags_a_planted_back_import(tmp_path, plant):
    _write(tmp_path, {**TOY, "liftpool/functional.py": "import math\n" + plant})
    graph = import_graph(tmp_path)
    bad = back_imports(graph)
    assert len(bad) == 1 and bad[0].startswith("liftpool.functional (layer 1) imports liftpool.models")


def test_checker_flags_a_cycle_within_a_layer(tmp_path):
    _write(
        tmp_path,
        {**TOY, "liftpool/layers.py": "from . import losses\n", "liftpool/losses.py": "from .layers import x\n"},
    )
    graph = import_graph(tmp_path)
    assert back_imports(graph) == []
    assert find_cycle(graph) == ["liftpool.layers", "liftpool.losses", "liftpool.layers"]


def test_checker_needs_every_module_in_the_table():
    for name in ("elsewhere.module", "liftpool.new_module"):
        with pytest.raises(LookupError, match="in no layer"):
            layer_of(name)
