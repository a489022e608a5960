"""The install files agree with each other and the README's commands exist."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_pyproject_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pip_names = {_name(r) for r in pyproject["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_names = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    conda_names = {"torch" if n == "pytorch" else n for n in conda_names}
    assert pip_names == conda_names
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_makefile_has_the_readme_commands_and_ci_calls_make_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("reproduce:", "test:", "lab:", "ext:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "torch==2.14.1 torchvision==0.29.1" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make reproduce") < readme.index("COCO") and "make test" in readme


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "assignlab", "--help"], capture_output=True, text=True, check=True).stdout
    assert "data" in out and "reproduce" in out
