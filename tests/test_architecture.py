"""The package's layering (docs/ARCHITECTURE.md), checked from the source with `ast`.

Every module of keras_forensics belongs to one layer; a module may import modules of its own
layer or of layers below, never above -- function-level (lazy) imports included. The module
import graph has no cycles. The table here is the one docs/ARCHITECTURE.md shows.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_forensics"

#: (layer, module prefixes), lowest first. A module takes the layer of its longest matching prefix.
LAYERS = [
    ("errors", ["keras_forensics.errors"]),
    ("config", ["keras_forensics.config"]),
    ("ops", ["keras_forensics.ops", "keras_forensics.metrics", "keras_forensics.preprocessing"]),
    ("layers+data", ["keras_forensics.layers", "keras_forensics.data"]),
    ("models", ["keras_forensics.models"]),
    ("artifacts", ["keras_forensics.artifacts"]),
    ("export", ["keras_forensics.serving.modules", "keras_forensics.serving.export", "keras_forensics.serving.protocol"]),
    ("applications", ["keras_forensics.detection", "keras_forensics.screening"]),
    ("training", ["keras_forensics.training"]),
    ("evaluation", ["keras_forensics.evaluation"]),
    ("serving", ["keras_forensics.serving"]),
    ("entry points", ["keras_forensics", "keras_forensics.__main__", "keras_forensics.train",
                      "keras_forensics.evaluate", "keras_forensics.generate", "keras_forensics.datasets",
                      "keras_forensics.explain", "keras_forensics.data.__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def imports_of(module: str, path: Path, modules: dict) -> set[str]:
    """The keras_forensics modules `module` imports anywhere in its source (lazy imports too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` imports the module a.b when there is one, else a name of a.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] == "keras_forensics")
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_module_imports_from_a_higher_layer():
    violations = []
    for module, imported in import_graph().items():
        for target in sorted(imported):
            if layer_of(target) > layer_of(module):
                violations.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                                  f"({LAYERS[layer_of(target)][0]})")
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    source = tmp_path / "keras_forensics" / "data" / "thing.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from keras_forensics.serving import client\n    from ..models import siamese\n")
    modules = {"keras_forensics.serving.client": None, "keras_forensics.models.siamese": None}
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = imports_of("keras_forensics.data.thing", source, modules)
    finally:
        ROOT = saved
    assert found == {"keras_forensics.serving.client", "keras_forensics.models.siamese"}
    assert layer_of("keras_forensics.serving.client") > layer_of("keras_forensics.data.thing")


def test_docs_architecture_shows_this_table():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", text, flags=re.MULTILINE)
    documented = [(name, sorted(re.findall(r"`([\w.]+)`", modules))) for _, name, modules in rows]
    expected = [(name, sorted(prefix.replace("keras_forensics.", "").replace("keras_forensics", "keras_forensics")
                              for prefix in prefixes)) for name, prefixes in LAYERS]
    assert documented == expected
