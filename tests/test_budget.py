import json

import pytest

from assignlab.study.budget import budget_table, estimate_seconds, finished_run_times, main, measured_speed
from assignlab.study.run.plan import plan_runs


def _write_result(folder, run, wall_time_s):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"config": run.config.to_dict(), "wall_time_s": wall_time_s}
    (folder / f"{run.run_id}.json").write_text(json.dumps(record))


def test_each_shared_run_is_charged_once_to_the_first_table(tmp_path):
    runs = plan_runs("deta_table1", "cpu")  # 3 rows x 5 seeds, all shared with DETA Table 8
    for run, minutes in zip(runs[:3], (6, 8, 10)):
        _write_result(tmp_path / "runs" / "deta_table1", run, minutes * 60)
        _write_result(tmp_path / "runs" / "deta_table8", run, minutes * 60)  # the runner's copy
    table = budget_table(tmp_path, "cpu").set_index("table")
    assert table.loc["deta_table1", ["runs", "finished"]].tolist() == [15, 3]
    assert table.loc["deta_table1", "hours_spent"] == pytest.approx(24 / 60)
    # the 12 runs left are estimated at the median of the same base and schedule: 8 minutes
    assert table.loc["deta_table1", "hours_left_estimate"] == pytest.approx(12 * 8 / 60)
    assert table.loc["deta_table8", "runs"] == 30 - 15  # its other 15 are deta_table1's
    assert table.loc["deta_table8", "hours_spent"] == 0
    assert table.loc["total", "hours_spent"] == pytest.approx(24 / 60)
    assert table.loc["total", "runs"] == table.drop("total")["runs"].sum()


def test_estimates_fall_back_to_time_per_epoch():
    import pandas as pd

    times = pd.DataFrame([{"run_id": "a", "base": "dino", "epochs": 5, "wall_time_s": 500.0},
                          {"run_id": "b", "base": "two_stage_deformable", "epochs": 5, "wall_time_s": 300.0}])
    assert estimate_seconds(times, "dino", 5) == 500.0
    assert estimate_seconds(times, "dino", 10) == 1000.0            # same base, 100 s an epoch
    assert estimate_seconds(times, "dab_detr", 2) == pytest.approx(2 * 80.0)  # median over all: 80 s an epoch
    assert pd.isna(estimate_seconds(times.iloc[:0], "dino", 5))


def test_estimates_prefer_runs_of_the_same_depth():
    import pandas as pd

    times = pd.DataFrame([{"run_id": r, "base": "two_stage_deformable", "epochs": 5, "enc_layers": enc,
                           "dec_layers": dec, "wall_time_s": s}
                          for r, enc, dec, s in (("a", 3, 3, 400.0), ("b", 3, 3, 500.0), ("c", 6, 6, 1300.0))])
    assert estimate_seconds(times, "two_stage_deformable", 5, (6, 6)) == 1300.0
    assert estimate_seconds(times, "two_stage_deformable", 5, (3, 3)) == 450.0
    assert estimate_seconds(times, "two_stage_deformable", 5, (1, 6)) == 500.0  # no run of that depth: all of them
    assert estimate_seconds(times, "two_stage_deformable", 5) == 500.0


def test_a_result_without_wall_time_is_named(tmp_path):
    (tmp_path / "runs" / "t").mkdir(parents=True)
    (tmp_path / "runs" / "t" / "abc-s0.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="abc-s0.json"):
        finished_run_times(tmp_path)


def test_reruns_scale_the_whole_study_by_their_median_speed(tmp_path, capsys):
    runs = plan_runs("deta_table1", "cpu")
    for run, minutes in zip(runs[:3], (6, 8, 10)):
        _write_result(tmp_path / "results" / "runs" / "deta_table1", run, minutes * 60)
    for run, minutes in zip(runs[:2], (3, 2)):  # ratios 0.5 and 0.25; the third run was not rerun
        _write_result(tmp_path / "rerun" / "runs" / "deta_table1", run, minutes * 60)
    _write_result(tmp_path / "rerun" / "runs" / "other", runs[5], 60)  # no committed run: ignored
    ratio, count = measured_speed(tmp_path / "results", [tmp_path / "rerun"])
    assert (ratio, count) == (pytest.approx(0.375), 2)
    total = budget_table(tmp_path / "results", "cpu").iloc[-1]
    assert main([str(tmp_path / "results"), "--measured", str(tmp_path / "rerun"), "--cores", "2"]) == 0
    whole = (total.hours_spent + total.hours_left_estimate) * 0.375
    assert f"2 rerun(s) took 0.38x the committed wall time (median): the whole study at that speed is about " \
           f"{whole:.1f} one-core hours, {whole / 2:.1f} h on 2 cores" in capsys.readouterr().out
    assert measured_speed(tmp_path / "results", [tmp_path / "nothing"]) == (pytest.approx(float("nan"), nan_ok=True), 0)
