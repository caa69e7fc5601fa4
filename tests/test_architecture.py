"""The layers of docs/ARCHITECTURE.md, held against the imports of src/vggnet (read with ast, nothing
imported): every import runs down or stays on its floor, no files import each other in a loop,
and imports inside functions are for optional packages only (and in the CLI, which loads each
command's modules when that command runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "vggnet"

# From the ground up; a module may import its own floor and the floors below it.
LAYERS = [
    ("errors", "progress", "tables", "fields"),
    ("fileio",),
    ("runtime",),
    ("data",),
    ("models",),
    ("eval",),
    ("engine",),
    ("localization", "transfer", "predict", "api"),
    ("demo",),
    ("cli", "__main__", ""),  # "": the package's face, which hands on the API (vggnet.train, ...)
]
OPTIONAL = ("onnx", "onnxruntime", "onnxscript", "torch.utils.tensorboard")
# The CLI loads each command's modules when it runs; the package's face loads the API on first use
# (PEP 562), so `import vggnet` and every command start without torch.
IMPORTS_INSIDE_FUNCTIONS_ALLOWED = ("vggnet.cli", "vggnet")


def floor_of(module: str) -> int:
    """vggnet.data.transforms -> the floor of ``data``."""
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is on no floor: add it to LAYERS and to docs/ARCHITECTURE.md")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, line, inside a function) for every import of `path`; relative imports
    resolved, ``from pkg import mod`` read as an import of ``pkg.mod`` where that is a module."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found = (SRC.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or (
                        SRC.parent / sub.replace(".", "/") / "__init__.py"
                    ).is_file()
                    yield (sub if found else target), child.lineno, in_function
            yield from walk(child, inner)

    yield from walk(tree, False)


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_module_is_on_a_floor():
    assert SOURCES, f"no sources under {SRC}"
    for path in SOURCES:
        floor_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_down_or_stay_on_their_floor(path):
    module = module_name(path)
    up = [
        f"line {line}: {target} (floor {floor_of(target)} of {len(LAYERS)}) from floor {floor_of(module)}"
        for target, line, _ in imports(path)
        if target.startswith("vggnet.") and target != "vggnet" and floor_of(target) > floor_of(module)
    ]
    assert not up, f"{module} imports from a higher floor:\n" + "\n".join(up)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_inside_functions_are_for_optional_packages_only(path):
    module = module_name(path)
    if module in IMPORTS_INSIDE_FUNCTIONS_ALLOWED:
        return
    hidden = [
        f"line {line}: {target}"
        for target, line, inside in imports(path)
        if inside and not any(target == o or target.startswith(o + ".") for o in OPTIONAL)
    ]
    assert not hidden, f"{module} imports inside a function (move it to the top):\n" + "\n".join(hidden)


def test_no_files_import_each_other_in_a_loop():
    graph = {
        module_name(p): {t for t, _, inside in imports(p) if t.startswith("vggnet.") and not inside}
        for p in SOURCES
    }
    # a module importing its own package's face (__init__) is not a loop: the face only hands names on
    for module, targets in graph.items():
        targets.discard(module)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module):
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in graph or module.startswith(target + "."):
                continue
            if state.get(target) == 1:
                loop = path[path.index(target) :] + [target]
                raise AssertionError("import loop: " + " -> ".join(loop))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checker_sees_an_arrow_up_and_a_hidden_import(tmp_path, monkeypatch):
    """The checks above can fail: a data module importing engine, and an import inside a function."""
    pkg = tmp_path / "vggnet"
    (pkg / "data").mkdir(parents=True)
    (pkg / "engine").mkdir()
    for f in ("__init__.py", "data/__init__.py", "engine/__init__.py", "engine/train.py"):
        (pkg / f).write_text("")
    bad = pkg / "data" / "bad.py"
    bad.write_text("from ..engine import train\n\ndef f():\n    import json\n")
    monkeypatch.setattr(__import__(__name__), "SRC", pkg)
    found = list(imports(bad))
    assert ("vggnet.engine.train", 1, False) in found and ("json", 4, True) in found
    assert floor_of("vggnet.engine.train") > floor_of(module_name(bad))
