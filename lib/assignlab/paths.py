"""Where the project's folders are, whatever the working directory.

The study's folders (``results/``, ``work-cache/``, ``data/``, ``notebooks/``, ``models/``) live in
the project root. A relative path given for one of them is taken from that root, not from the
working directory, so a notebook finds the committed results whether its kernel starts in
``notebooks/`` (JupyterLab), in the repository (papermill, ``make reproduce``) or anywhere else.

The root is, in order: the folder named by ``$ASSIGNLAB_ROOT``; the nearest folder at or above
the working directory whose ``pyproject.toml`` declares the ``assignlab`` project; the checkout
the package was imported from; the working directory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT_ENV = "ASSIGNLAB_ROOT"
_PROJECT_NAME = re.compile(r'^name\s*=\s*"assignlab"\s*$', re.MULTILINE)


def is_project_root(folder: Path) -> bool:
    """Whether ``folder`` holds the ``pyproject.toml`` of the ``assignlab`` project."""
    try:
        return bool(_PROJECT_NAME.search((folder / "pyproject.toml").read_text()))
    except OSError:
        return False


def _enclosing_root(start: Path) -> Path | None:
    return next((folder for folder in (start, *start.parents) if is_project_root(folder)), None)


def project_root() -> Path:
    """The project root (module docstring), as an absolute path."""
    named = os.environ.get(ROOT_ENV)
    if named:
        return Path(named).expanduser().resolve()
    cwd = Path.cwd()
    return _enclosing_root(cwd) or _enclosing_root(Path(__file__).resolve().parent) or cwd


def in_project(path: str | Path) -> Path:
    """``path`` itself when absolute, else the same path under :func:`project_root`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path
