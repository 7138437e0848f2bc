"""The package's imports point one way: each module imports only from its own layer or those below.

Layers, bottom-up (docs/design.md says what each holds). A module-level import of a higher layer, an
import inside a function (other than the CLI's deliberate lazy imports), or an import cycle fails.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cmzoo"

LAYERS = [
    ["cmzoo.errors", "cmzoo.files", "cmzoo.safe_pickle", "cmzoo.progress"],  # progress: cmzoo.data shows a bar reading folders
    ["cmzoo.engine", "cmzoo.data", "cmzoo.layers", "cmzoo.backbone"],  # contract and maths
    ["cmzoo.registry"],  # the registry
    ["cmzoo.config", "cmzoo.checkpoint", "cmzoo.rundir", "cmzoo.device", "cmzoo.grids", "cmzoo.figures", "cmzoo.pages",
     "cmzoo.metrics"],  # what training and inference share; metrics/ holds only pure measures
    ["cmzoo.run", "cmzoo.testing"],  # trained runs as objects: loading, sampling
    ["cmzoo.editing", "cmzoo.train", "cmzoo.scoring", "cmzoo.report"],
    ["cmzoo.bench"],
    ["cmzoo", "cmzoo.cli", "cmzoo.__main__"],
]
LAZY_ALLOWED = {"cmzoo.cli", "cmzoo"}  # start-up time: the CLI and the package's lazy exports


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    assert best is not None, f"{module} is in no layer of tests/test_layers.py; add it where it belongs"
    return best[0]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported cmzoo module, is it at module level) for every import in `path`."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    top |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}  # TYPE_CHECKING blocks
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cmzoo") and not node.level:
            found.append((node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.startswith("cmzoo")]
    return found


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    here = layer_of(module)
    for target, at_top in imports(MODULES[module]):
        if target.startswith(module + ".") or module.startswith(target + "."):
            continue  # a package and its own submodules
        assert layer_of(target) <= here, f"{module} (layer {here}) imports {target} (layer {layer_of(target)})"
        assert at_top or module in LAZY_ALLOWED, f"{module} imports {target} inside a function"


def test_no_import_cycles():
    graph = {m: {t for t, top in imports(p) if top and t in MODULES and t != m} for m, p in MODULES.items()}
    for m in graph:  # a package's __init__ re-exporting its submodules is not a cycle
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            assert state.get(t) != 1, "import cycle: " + " → ".join(path[path.index(t):] + [t]) if t in path else t
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
