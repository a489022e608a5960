"""Where the study's folders are: the project root from the environment, from the working
directory's enclosing project, from the package's checkout, else the working directory."""
from pathlib import Path

import pytest

from assignlab import paths

PROJECT = '[project]\nname = "assignlab"\nversion = "0"\n'


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "study"
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PROJECT)
    return root


def test_the_environment_names_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path / "elsewhere"))
    assert paths.project_root() == (tmp_path / "elsewhere").resolve()
    assert paths.in_project("results") == (tmp_path / "elsewhere").resolve() / "results"
    assert paths.in_project(tmp_path / "abs") == tmp_path / "abs"      # absolute paths stay


def test_a_kernel_in_a_subfolder_finds_its_project(project, monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV)
    monkeypatch.chdir(project / "notebooks" / "deep")
    assert paths.project_root() == project
    assert paths.in_project("results/runs") == project / "results" / "runs"


def test_another_projects_pyproject_does_not_count(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "assignlab-extras"\n')
    assert not paths.is_project_root(other)
    monkeypatch.delenv(paths.ROOT_ENV)
    monkeypatch.chdir(other)
    # outside any assignlab project: the checkout the package was imported from, if it is one
    checkout = Path(paths.__file__).resolve().parents[2]
    assert paths.project_root() == (checkout if paths.is_project_root(checkout) else other)
