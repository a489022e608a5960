"""``python -m assignlab reproduce --only``: which notebooks run, and bad names fail before any runs."""
import pytest

from assignlab.cli import main as cli_main


@pytest.fixture
def notebook_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    for stem in ("quickstart", "deta_table1", "align_table2", "_draft", "scale"):
        (tmp_path / "notebooks" / f"{stem}.ipynb").write_text("{}")
    executed = []
    monkeypatch.setattr("assignlab.reproduce.execute_notebook",
                        lambda source, output, parameters: executed.append(source.stem))
    return executed


def test_repeated_only_runs_every_named_notebook_in_run_order(notebook_folder):
    assert cli_main(["reproduce", "--only", "deta_table1", "--only", "align_table2", "quickstart"]) == 0
    assert notebook_folder == ["quickstart", "align_table2", "deta_table1"]


def test_unknown_only_name_fails_before_any_notebook_runs(notebook_folder):
    with pytest.raises(ValueError, match=r"no notebook named deta_tabel1 \(available: quickstart, align_table2"):
        cli_main(["reproduce", "--only", "deta_table1", "--only", "deta_tabel1"])
    assert notebook_folder == []


def test_notebooks_starting_with_an_underscore_are_not_run(notebook_folder):
    assert cli_main(["reproduce"]) == 0
    assert notebook_folder == ["quickstart", "align_table2", "deta_table1"]


def test_the_scale_ladder_runs_only_when_named(notebook_folder, capsys):
    assert cli_main(["reproduce"]) == 0
    assert "scale" not in notebook_folder and "--only scale" in capsys.readouterr().out
    notebook_folder.clear()
    assert cli_main(["reproduce", "--only", "scale"]) == 0
    assert notebook_folder == ["scale"]
