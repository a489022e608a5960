"""A run from a modified source tree records what the modification was (``git_diff``, ``source.diff``)."""
import hashlib
import shutil
import subprocess

import pytest

from assignlab.engine.run import SOURCE_DIFF_NAME, source_diff, write_source_diff

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]


def git(repo, *args) -> bytes:
    return subprocess.run(["git", *IDENTITY, *args], cwd=repo, capture_output=True, check=True, timeout=30).stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository with two committed files, ``a.txt`` and ``sub/b.bin``, and a clean tree."""
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("one\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)))
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    return root


def expected_sha256(repo) -> str:
    return hashlib.sha256(git(repo, "diff", "HEAD", "--binary")).hexdigest()


def test_a_clean_tree_has_no_diff(repo):
    assert source_diff(repo) is None


def test_a_folder_outside_any_repository_gives_none(tmp_path, monkeypatch):
    folder = tmp_path / "plain"
    folder.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path either
    assert source_diff(folder) is None


def test_a_missing_git_gives_none(repo, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert source_diff(repo) is None


def test_modified_files_and_the_hash_of_git_diff_head(repo):
    (repo / "a.txt").write_text("two\n")
    (repo / "sub" / "b.bin").write_bytes(bytes(reversed(range(256))))
    source = source_diff(repo / "sub")  # any folder of the repository; paths are relative to its root
    assert source is not None
    assert source.files == ("a.txt", "sub/b.bin")
    assert source.diff == git(repo, "diff", "HEAD", "--binary")
    assert source.sha256 == expected_sha256(repo)
    assert source.record() == {"sha256": source.sha256, "files": ["a.txt", "sub/b.bin"]}


def test_staged_changes_count_too(repo):
    (repo / "a.txt").write_text("staged\n")
    git(repo, "add", "a.txt")
    source = source_diff(repo)
    assert source is not None and source.files == ("a.txt",)
    assert source.sha256 == expected_sha256(repo)


def test_the_hash_changes_with_the_modification(repo):
    (repo / "a.txt").write_text("two\n")
    first = source_diff(repo)
    (repo / "a.txt").write_text("three\n")
    second = source_diff(repo)
    assert first is not None and second is not None
    assert first.files == second.files == ("a.txt",)
    assert first.sha256 != second.sha256
    assert second.sha256 == expected_sha256(repo)


def test_source_diff_file_reapplies_and_follows_the_tree(repo, tmp_path):
    (repo / "a.txt").write_text("two\n")
    (repo / "sub" / "b.bin").write_bytes(b"\0changed")
    out = tmp_path / "run"
    out.mkdir()
    write_source_diff(out, source_diff(repo))
    written = out / SOURCE_DIFF_NAME
    assert written.read_bytes() == git(repo, "diff", "HEAD", "--binary")

    git(repo, "checkout", "-q", "--", ".")  # back to HEAD; the file brings the modification back
    git(repo, "apply", str(written))
    assert (repo / "a.txt").read_text() == "two\n"
    assert (repo / "sub" / "b.bin").read_bytes() == b"\0changed"

    git(repo, "checkout", "-q", "--", ".")  # a resumed run from a clean tree leaves no stale diff
    write_source_diff(out, source_diff(repo))
    assert not written.exists()
    assert [p.name for p in out.iterdir()] == []


def test_a_run_records_the_diff_beside_the_commit(repo, tmp_path, monkeypatch):
    from assignlab.engine import run
    from assignlab.presets import preset
    from assignlab.study.run.store import read_result

    (repo / "a.txt").write_text("two\n")
    monkeypatch.setattr(run, "source_diff", lambda: source_diff(repo))
    cfg = preset("smoke").override({"data.root": str(tmp_path / "data"), "train.epochs": 1, "train.batch_size": 2})
    out = tmp_path / "run"
    result = run.train_run(cfg, seed=0, out_dir=out, progress=False, max_steps_per_epoch=1)
    assert result["git_diff"] == {"sha256": expected_sha256(repo), "files": ["a.txt"]}
    assert (out / SOURCE_DIFF_NAME).read_bytes() == git(repo, "diff", "HEAD", "--binary")
    assert read_result(out / "result.json")["git_diff"] == result["git_diff"]


def test_a_worker_records_the_source_it_started_with(repo, tmp_path, monkeypatch):
    """A study worker imports the code once and trains several runs: an edit made meanwhile is not
    what it runs, so its later runs record the source pinned at its start."""
    from assignlab.engine import run
    from assignlab.presets import preset

    monkeypatch.setattr(run, "_pinned_source", None)
    monkeypatch.setattr(run, "source_diff", lambda: source_diff(repo))
    monkeypatch.setattr(run, "git_commit", lambda: "c0ffee")
    run.pin_source()  # a clean tree
    (repo / "a.txt").write_text("edited after the worker started\n")
    monkeypatch.setattr(run, "git_commit", lambda: "later-dirty")
    cfg = preset("smoke").override({"data.root": str(tmp_path / "data"), "train.epochs": 1, "train.batch_size": 2})
    result = run.train_run(cfg, seed=0, out_dir=tmp_path / "run", progress=False, max_steps_per_epoch=1)
    assert result["git_commit"] == "c0ffee" and result["git_diff"] is None
    assert not (tmp_path / "run" / SOURCE_DIFF_NAME).exists()
