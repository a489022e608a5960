"""``study verify``: reruns in a scratch study, compared with the committed results against 2 SD of
the row's seeds; the machine recorded in run files."""
import json
import math

import pandas as pd
import pytest

from assignlab.cli import entry_point
from assignlab.engine.machine import machine_info, machine_slug
from assignlab.study.run.runner import run_table
from assignlab.study.report.index import build_index
from assignlab.study.report.verification import summary_line
from assignlab.study.verify import chosen_spec, verify_table

TABLE = "deta_table1"


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def committed(tmp_path):
    """A results store with the first row of deta_table1 at the smoke profile, seeds 0 and 1."""
    results = tmp_path / "results"
    report = run_table(chosen_spec(TABLE, "first"), "smoke", "0,1", workers=1, threads_per_worker=1,
                       results_dir=results, cache_dir=tmp_path / "committed-cache", progress=False)
    assert not report.failed
    return results


def test_a_rerun_on_the_same_machine_agrees_and_touches_nothing_committed(committed, tmp_path, capsys):
    before = _files(committed)
    code = entry_point(["study", "verify", "--table", TABLE, "--rows", "first", "--seeds", "0", "--profile", "smoke",
                 "--workers", "1", "--threads", "1", "--save"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reproduce on this machine within seed noise" in out and "about" in out
    scratch = tmp_path / "work-cache" / "verify" / TABLE
    reruns = list((scratch / "results" / "runs" / TABLE).glob("*-s0.json"))
    assert len(reruns) == 1 and (scratch / "runs" / reruns[0].stem / "result.json").is_file()
    saved = committed / "verify" / f"{TABLE}-{machine_slug()}.csv"
    assert saved.is_file()
    after = _files(committed)
    assert {k: v for k, v in after.items() if k.parts[0] != "verify"} == before  # results/runs untouched
    saved_table = pd.read_csv(saved)
    # same code, seed, threads and machine: the same AP
    assert saved_table["delta_AP"].tolist() == [0.0] and saved_table["verdict"].tolist() == ["within seed noise"]
    index = build_index(committed, profile="smoke")
    assert f"[{saved.name}](verify/{saved.name}): {TABLE}: the committed results reproduce" in index


def test_a_committed_row_off_by_more_than_two_sd_is_reported_and_exits_non_zero(committed, tmp_path, capsys):
    """Both committed seeds of the row shifted by the same amount (the row's SD stays as it was)."""
    paths = sorted((committed / "runs" / TABLE).glob("*-s[01].json"))
    records = [json.loads(path.read_text()) for path in paths]
    sd = abs(records[0]["metrics"]["AP"] - records[1]["metrics"]["AP"]) / math.sqrt(2)
    shift = 2.5 * sd + 0.01
    for path, record in zip(paths, records):
        record["metrics"]["AP"] += shift
        path.write_text(json.dumps(record))
    comparison, saved = verify_table(TABLE, rows="first", seeds=0, profile="smoke", workers=1, threads_per_worker=1,
                                     results_dir=committed, progress=False)
    assert saved is None
    assert list(comparison["verdict"]) == ["outside"]
    assert comparison["delta_AP"].iloc[0] == pytest.approx(-shift, abs=1e-9)
    assert comparison["row_sd"].iloc[0] == pytest.approx(sd, abs=1e-9)
    assert "1 of 1 reruns differ by more than 2 SD" in summary_line(comparison)
    code = entry_point(["study", "verify", "--table", TABLE, "--rows", "first", "--seeds", "0", "--profile", "smoke",
                 "--workers", "1", "--threads", "1"])
    assert code == 1
    assert "differ by more than 2 SD" in capsys.readouterr().out


def test_a_run_without_a_committed_result_is_an_error_before_training(tmp_path, capsys):
    code = entry_point(["study", "verify", "--table", TABLE, "--rows", "first", "--profile", "smoke"])
    assert code == 2
    assert "no committed result for run" in capsys.readouterr().err
    assert not (tmp_path / "work-cache" / "verify").exists()
    with pytest.raises(ValueError, match="has no row"):
        chosen_spec(TABLE, "no such row")


def test_a_scratch_folder_over_committed_results_or_the_cache_is_refused(committed, tmp_path):
    for scratch in (tmp_path, tmp_path / "work-cache", tmp_path / "results" / "x"):
        with pytest.raises(ValueError, match="overlaps"):
            verify_table(TABLE, rows="first", seeds=0, profile="smoke", results_dir=committed, scratch=scratch,
                         progress=False)
    assert not list((tmp_path / "results" / "x").glob("*"))


def test_rows_are_chosen_by_label_even_with_commas():
    label = "IoU assignment + NMS, K=4"
    assert [row.label for row in chosen_spec(TABLE, label).rows] == [label]
    both = chosen_spec(TABLE, f"Hungarian; {label}")
    assert [row.label for row in both.rows] == ["Hungarian", label]


def test_new_run_files_name_their_machine(committed):
    record = json.loads(next((committed / "runs" / TABLE).glob("*-s0.json")).read_text())
    machine = record["machine"]
    assert machine["cpu"] == machine_info()["cpu"] and machine["cpu_capability"]
    assert machine["threads"] == 1 and machine["logical_cores"] >= 1 and "blas" in machine
