"""The layers of ``lib/assignlab`` import downwards only (README, "Architecture").

Every ``import`` of an ``assignlab`` module anywhere in a file counts, at the top or inside a
function, so a lazy import cannot hide an upward arrow.
"""
import ast
import shutil
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "assignlab"

FOUNDATION = {"config", "presets", "jsonio", "box_ops", "paths"}
# layer -> the layers it may import (besides itself); a layer is a top-level module or package
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "jsonio": set(),
    "box_ops": set(),
    "paths": set(),
    "presets": {"config"},
    "data": FOUNDATION,
    "ops": FOUNDATION,
    "models": FOUNDATION | {"ops"},
    "assign": FOUNDATION,
    "losses": FOUNDATION | {"assign"},
    "diagnostics": FOUNDATION | {"data", "models", "assign", "losses"},
    "engine": FOUNDATION | {"data", "ops", "models", "assign", "losses", "diagnostics"},
    "analysis": FOUNDATION | {"data", "ops", "models", "assign", "losses", "diagnostics", "engine"},
    "checkpoints": FOUNDATION | {"data", "ops", "models", "engine"},
    "study": FOUNDATION | {"data", "ops", "models", "assign", "losses", "diagnostics", "engine", "analysis",
                           "checkpoints"},
}
# study's own rooms: the catalogue of tables, running them, reporting on them
STUDY_ALLOWED = {"tables": set(), "run": {"tables"}, "report": {"tables", "run"}}
# the face: command-line modules, which may import any layer
FACE_FILES = {"__init__.py", "__main__.py", "cli.py", "reproduce.py", "predict.py"}
FACE_MODULES = {"engine/train_command.py", "engine/eval_command.py", "models/describe.py"}


def _is_face(relative: Path) -> bool:
    return (len(relative.parts) == 1 and relative.name in FACE_FILES) or relative.name == "cli.py" \
        or relative.as_posix() in FACE_MODULES


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every assignlab module ``path`` imports, relative imports resolved."""
    package = ["assignlab", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found += [(node.lineno, module)] if node.module else [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name == "assignlab" or name.startswith("assignlab.")]


def _layer(parts: list[str]) -> str:
    return parts[0].removesuffix(".py")


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if _is_face(relative):
            continue
        layer = _layer(list(relative.parts))
        if layer not in ALLOWED:
            problems.append(f"{relative}: layer {layer!r} is not in the table of tests/test_architecture.py")
            continue
        for line, name in _imported_modules(path):
            target = name.split(".")[1:]
            if not target:
                problems.append(f"{relative}:{line} imports the assignlab package itself")
                continue
            other = target[0]
            if other != layer and other not in ALLOWED[layer]:
                problems.append(f"{relative}:{line} ({layer}) imports {name} ({other})")
            elif other == layer == "study" and len(relative.parts) > 2 and len(target) > 1:
                room, other_room = relative.parts[1], target[1]
                if room in STUDY_ALLOWED and other_room in STUDY_ALLOWED and other_room != room \
                        and other_room not in STUDY_ALLOWED[room]:
                    problems.append(f"{relative}:{line} (study/{room}) imports {name} (study/{other_room})")
    return problems


def test_layers_import_downwards_only():
    assert upward_imports() == []


@pytest.mark.parametrize("source, layer, expected", [
    ("from assignlab.losses.boxes import giou_box_loss\n", "assign/x.py", "imports assignlab.losses.boxes (losses)"),
    ("def f():\n    from assignlab.analysis import matches\n", "engine/x.py", "imports assignlab.analysis (analysis)"),
    ("from ..analysis import matches\n", "engine/x.py", "imports assignlab.analysis (analysis)"),
    ("import assignlab.study.report.stats\n", "study/tables/x.py", "(study/tables) imports assignlab.study.report.stats"),
])
def test_an_upward_import_is_found(tmp_path, monkeypatch, source, layer, expected):
    """The check itself, on a copy of the package with one upward import planted."""
    copy = tmp_path / "assignlab"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    planted = copy / layer
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    problems = upward_imports()
    assert len(problems) == 1 and expected in problems[0], problems
