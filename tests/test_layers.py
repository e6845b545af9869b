"""The packages' layers and the one direction of imports between them (README, "Layout").

A module may import only from its own layer or earlier ones, at the top of the file or inside a
function (a deferred import may spare a heavy dependency, never hide a backwards edge), and the
static import graph has no cycle. Every module of ddn and delan must be placed in a layer, so a
new module is classified when it is added. Besides the static check, every module is imported
in a fresh interpreter in several random orders (an import cycle at import time fails there).
"""

import ast
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (layer name, module prefixes); a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("ddn", ["ddn"]),
    ("foundation", ["delan.errors", "delan.fileio", "delan.version"]),
    ("dynamics", ["delan.dynamics", "delan.friction"]),
    ("models and systems", ["delan.models", "delan.systems", "delan.reference", "delan.trajectories"]),
    ("losses and integrators", ["delan.losses", "delan.hamiltonian_losses", "delan.rollout_loss", "delan.integrators"]),
    ("data", ["delan.data", "delan.fingerprint", "delan.runlock"]),
    (
        "training and evaluation",
        [
            "delan.training",
            "delan.training_streaming",
            "delan.training_graph",
            "delan.distributed",
            "delan.evaluation",
            "delan.control",
        ],
    ),
    ("plotting", ["delan.plotting", "delan.control_plots"]),
    ("api", ["delan.api", "delan.export", "delan.compiled", "delan"]),
    ("cli", ["delan.cli", "delan.__main__"]),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and README")
    return best


def module_files() -> Dict[str, Path]:
    out = {}
    for package in ("ddn", "delan"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path, known: Set[str]) -> List[tuple]:
    """(imported module, line) for every import of ddn/delan modules anywhere in the file.
    ``from a.b import c`` imports a.b.c when that is a module, else a.b."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                is_package = path.name == "__init__.py"
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            names = [f"{src}.{a.name}" if f"{src}.{a.name}" in known else src for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("ddn", "delan"):
                # the nearest enclosing module we know (``import delan.models.base`` -> itself)
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in known and name != module:
                    found.append((name, node.lineno))
    return found


def import_graph():
    files = module_files()
    known = set(files)
    return files, {m: imports_of(m, p, known) for m, p in files.items()}


def test_every_module_has_a_layer_and_imports_only_its_own_or_earlier_layers():
    files, graph = import_graph()
    assert len(files) > 40, "the module walk found too few modules"
    backwards = []
    for module, edges in graph.items():
        mine = layer_of(module)
        for target, line in edges:
            theirs = layer_of(target)
            if theirs > mine:
                backwards.append(
                    f"{files[module].relative_to(ROOT)}:{line}: {module} ({LAYERS[mine][0]}) imports "
                    f"{target} ({LAYERS[theirs][0]})"
                )
    assert not backwards, "imports against the layer order:\n" + "\n".join(backwards)


def test_static_import_graph_has_no_cycle():
    """Deferred imports included: a cycle hidden inside a function is still a cycle."""
    _, graph = import_graph()
    # a package's __init__ importing its own submodules is how packages re-export: not an edge back
    edges = {m: {t for t, _ in e if not (t.startswith(m + ".") and m in graph)} for m, e in graph.items()}
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_layer_check_catches_a_backwards_import(tmp_path):
    """The check itself: a models module importing training is reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from delan.training import TrainConfig\n")
    files = module_files()
    edges = imports_of("delan.models.bad", fake, set(files) | {"delan.models.bad"})
    assert ("delan.training", 2) in edges
    assert layer_of("delan.training") > layer_of("delan.models.bad")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_import_every_module_in_random_order_in_a_fresh_interpreter(seed):
    modules = sorted(m for m in module_files() if m != "delan.__main__")
    random.Random(seed).shuffle(modules)
    code = f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"order {modules}:\n{proc.stderr[-3000:]}"


def test_public_namespaces_are_their_all():
    """The packages export what ``__all__`` lists, and the ddn internals are not among them."""
    import ddn
    import delan

    for package in (ddn, delan):
        assert sorted(package.__all__) == sorted(set(package.__all__))
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.__all__ names {name}, which it lacks"
    for internal in ("elementwise", "unpack_symmetric", "init_linear"):
        assert internal not in ddn.__all__ and not hasattr(ddn, internal)
    assert "solve_spd" not in delan.__all__
