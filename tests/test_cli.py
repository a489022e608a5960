"""The command line turns bad input into one ``error:`` line and exit status 2."""
import pytest

from assignlab.cli import TRACEBACK_ENV, entry_point


def test_unknown_preset_is_one_error_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    assert entry_point(["train", "--preset", "nope", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown preset 'nope' (available: smoke, cpu,") and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_missing_checkpoint_names_the_file(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    missing = tmp_path / "missing.pth"
    assert entry_point(["eval", "--checkpoint", str(missing)]) == 2
    assert f"error: {missing}: checkpoint not found" in capsys.readouterr().err


def test_the_traceback_variable_reraises(monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(KeyError, match="unknown config field 'model.nope'"):
        entry_point(["train", "--preset", "smoke", "--set", "model.nope=3", "--out", "unused"])
