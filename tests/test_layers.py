"""The house rules, read from the tree with ``ast``: dependencies point down the layers, argparse lives only in
labkit/cli/, modules stay under 400 lines and functions under 60.

Layers from the ground up (docs: the developers' guide): models and threads; core; drafters and engines; measure;
training; lab and checks; cli. A module may import its own layer or a lower one; imports inside functions count.
labkit/__init__.py and labkit/__main__.py may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABKIT = ROOT / "labkit"
LAYERS = {"models": 0, "threads": 0, "core": 1, "drafters": 2, "engines": 2, "measure": 3, "training": 4, "lab": 5,
          "checks": 5, "cli": 6}
FREE = {"labkit/__init__.py", "labkit/__main__.py"}  # the package's front door and `python -m labkit`
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Known offenders: none. Anything the reading finds fails, and so does an entry here whose offence is gone.
KNOWN_OFFENDERS: set[tuple[str, str]] = set()


def modules() -> list[Path]:
    return sorted(LABKIT.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def layer_of(dotted: str) -> int | None:
    """The layer of ``labkit.<part>...`` (None outside labkit, or for the package root)."""
    parts = dotted.split(".")
    if parts[0] != "labkit" or len(parts) < 2:
        return None
    return LAYERS[parts[1]]


def root_exports() -> dict[str, str]:
    """labkit/__init__.py's lazy names ({name: module}): ``from labkit import X`` imports that module."""
    for node in ast.walk(ast.parse((LABKIT / "__init__.py").read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imported(name: str, tree: ast.AST) -> list[str]:
    """Every module the module at ``name`` (labkit/...py) imports, at the top or inside functions, absolute."""
    package = name[:-3].split("/")
    package = package if package[-1] == "__init__" else package[:-1]
    package = [p for p in package if p != "__init__"]
    exports = root_exports()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base == "labkit":  # from labkit import core / from labkit import load_target
                out += [exports.get(a.name, f"labkit.{a.name}") for a in node.names]
            else:
                out.append(base)
    return out


def offences_in(name: str, text: str) -> set[tuple[str, str]]:
    """What the module at ``name`` (labkit/...py) with source ``text`` does against the rules."""
    found = set()
    tree = ast.parse(text)
    targets = imported(name, tree)
    own = None if name in FREE else layer_of(name[:-3].replace("/", "."))
    if own is not None:
        for target in targets:
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                found.add(("import", f"{name} -> {'.'.join(target.split('.')[:3])}"))
    if not name.startswith("labkit/cli/") and "argparse" in {t.split(".")[0] for t in targets}:
        found.add(("argparse", name))
    if len(text.splitlines()) > MAX_MODULE_LINES:
        found.add(("module", name))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES):
            found.add(("function", f"{name}:{node.name}"))
    return found


def offences() -> set[tuple[str, str]]:
    return set().union(*(offences_in(rel(p), p.read_text(encoding="utf-8")) for p in modules()))


def test_the_layers_argparse_and_sizes_hold():
    found = offences()
    new = sorted(found - KNOWN_OFFENDERS)
    assert not new, "against the house rules:\n" + "\n".join(f"{kind}: {what}" for kind, what in new)
    gone = sorted(KNOWN_OFFENDERS - found)
    assert not gone, "fixed, so remove from KNOWN_OFFENDERS:\n" + "\n".join(f"{k}: {w}" for k, w in gone)


def test_every_labkit_package_has_a_layer():
    """A new top-level package or module must be placed in the order before the rules can hold for it."""
    parts = {p.relative_to(LABKIT).parts[0].removesuffix(".py") for p in modules()}
    assert parts - {"__init__", "__main__"} <= set(LAYERS)


@pytest.mark.parametrize("source, kind", [
    ("from labkit.measure.timing import sync\n", "import"),  # core reaching up into measure
    ("def f():\n    from labkit.lab import views\n", "import"),  # inside a function counts too
    ("from ..drafters import base\n", "import"),  # relative imports too
    ("from labkit import SpeculativeDecoder, load_target\n", None),  # labkit.core and labkit.models: allowed
    ("from labkit import cli\n", "import"),
    ("import argparse\n", "argparse"),
    ("x = 1\n" * (MAX_MODULE_LINES + 1), "module"),
    ("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES, "function"),
    ("def f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1), None),
])
def test_the_rules_catch_a_planted_offence(source, kind):
    """The check itself can fail: a module planted in labkit/core breaks exactly the rule it breaks."""
    kinds = {k for k, _ in offences_in("labkit/core/planted.py", source)}
    assert kinds == ({kind} if kind else set())


def test_the_front_door_may_import_anything():
    assert offences_in("labkit/__init__.py", "from labkit.cli import main\n") == set()
