"""The study: specs build, statistics and verdicts, aggregation, the cached parallel runner."""
import ast
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from assignlab.cli import main as cli_main
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model, check_model_config
from assignlab.study.report import aggregate
from assignlab.study.report.notebooks import all_notebooks
from assignlab.study.report.stats import Interval, t_interval, verdict
from assignlab.study.run.plan import parse_seeds, plan_runs
from assignlab.study.run.runner import run_table
from assignlab.study.run.status import table_status
from assignlab.study.run.store import StudyPaths
from assignlab.study.tables import paper
from assignlab.study.tables.beyond import notebook_name
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.methods import deta, hungarian
from assignlab.study.tables.profiles import PROFILES
from assignlab.study.tables.spec import Hypothesis, PaperRef, RowSpec, TableSpec, difference

ROOT = Path(__file__).resolve().parents[1]
T_975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student t quantiles (df -> t_{0.975, df})


# -------------------------------------------------------------------------------- statistics
def test_t_interval_matches_the_hand_computed_formula():
    interval = t_interval([1.0, 2.0, 3.0, 4.0])
    s = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # sample sd of 1..4
    assert interval.mean == pytest.approx(2.5)
    assert interval.half_width == pytest.approx(T_975[3] * s / 2)
    assert interval.n == 4
    one = t_interval([7.0])
    assert one.mean == 7.0 and math.isnan(one.half_width) and one.n == 1
    with pytest.raises(ValueError, match="NaN"):
        t_interval([1.0, float("nan")])


@pytest.mark.parametrize("low, high, direction, margin, expected", [
    (0.5, 2.0, ">", 0, "reproduced"),
    (-2.0, -0.5, ">", 0, "not reproduced"),
    (-0.5, 2.0, ">", 0, "inconclusive"),
    (-2.0, -0.5, "<", 0, "reproduced"),
    (0.5, 2.0, "<", 0, "not reproduced"),
    (-0.4, 0.6, "equivalent", 1.0, "reproduced"),
    (1.2, 3.0, "equivalent", 1.0, "not reproduced"),
    (-3.0, -1.0, "equivalent", 1.0, "not reproduced"),
    (0.2, 1.5, "equivalent", 1.0, "inconclusive"),
])
def test_verdict_follows_the_side_of_the_interval(low, high, direction, margin, expected):
    interval = Interval(mean=(low + high) / 2, half_width=(high - low) / 2, n=3)
    assert verdict(interval, direction, margin) == expected


def test_one_seed_is_inconclusive_whatever_the_value():
    assert verdict(Interval(5.0, math.nan, 1), ">") == "inconclusive (1 seed)"
    assert verdict(Interval(math.nan, math.nan, 0), ">") == "inconclusive (no runs)"


# ------------------------------------------------------------------------------------- specs
def _unique_configs(profile):
    seen = {}
    for spec in TABLES.values():
        for row, config in spec.row_configs(profile):
            seen.setdefault(config.stable_hash(), (spec.name, row.label, config))
    return seen.values()


def test_every_smoke_run_config_builds_and_trains_one_step():
    from assignlab.data.collate import collate_detection

    torch.manual_seed(0)
    images, mask, targets = collate_detection([
        (torch.randn(3, 96, 96), {"boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.2]]),
                                  "labels": torch.tensor([1, 4])}),
        (torch.randn(3, 96, 96), {"boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]]), "labels": torch.tensor([2])}),
    ])
    configs = list(_unique_configs("smoke"))
    assert len(configs) > 40
    for table, label, config in configs:
        model = build_model(config.model)
        criterion = Criterion.from_config(config)
        losses = criterion(model(images, mask), targets)
        assert torch.isfinite(losses["loss"]), (table, label)


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_every_run_config_of_the_larger_profiles_is_valid(profile):
    for table, label, config in _unique_configs(profile):
        check_model_config(config.model)
        Criterion.from_config(config)


def test_every_row_finds_its_paper_number_and_every_table_has_claims():
    for spec in TABLES.values():
        # alignment_evidence's claims are on the alignment diagnostics; scale_bases looks at the AP floor only
        least = 0 if spec.name in ("alignment_evidence", "scale_bases") else 1
        most = {"objective_x_base": 5, "scale": 7}.get(spec.name, 4)
        assert least <= len(spec.claims) <= most, spec.name
        for row in spec.rows:
            if row.paper is not None:
                assert math.isfinite(paper.paper_value(spec.paper_stem_of(row.paper), row.paper)), (spec.name, row.label)
    assert paper.paper_value("deta_table8", PaperRef({"K": "inf"})) == 46.5
    assert paper.paper_value("align_tableB", PaperRef({"w_pos": "(t-s)^2", "w_neg": "(1-t)*s^2"})) == 49.8
    with pytest.raises(ValueError, match="deta_table8.csv: 0 rows match"):
        paper.paper_value("deta_table8", PaperRef({"K": "3"}))
    with pytest.raises(ValueError, match="no column 'B'"):
        paper.paper_value("deta_table8", PaperRef({"B": "3"}))


def test_shared_runs_are_planned_once_and_across_tables_have_one_id():
    runs = plan_runs("align_table6", "smoke")
    assert len(TABLES["align_table6"].rows) == 12 and len(runs) == 10
    shared = [r for r in runs if len(r.rows) > 1]
    assert len(shared) == 1 and set(shared[0].rows) == {"alpha=0.25", "k=3", "tau=1.5"}
    ids = lambda table: {r.run_id: r.rows for r in plan_runs(table, "smoke")}  # noqa: E731
    hungarian_t1 = next(i for i, rows in ids("deta_table1").items() if rows == ("Hungarian",))
    assert ids("deta_table8")[hungarian_t1] == ("bipartite (Hungarian)",)
    assert len(plan_runs("deta_table1", "cpu", seeds="0,1")) == 6
    assert parse_seeds("[0, 3]") == (0, 3) and parse_seeds(2) == (2,) and parse_seeds(None) is None
    with pytest.raises(ValueError, match="integers"):
        parse_seeds("a,b")


NEW_BASE_TABLES = ("deta_table1_detr", "align_table2", "align_table3", "align_table7", "objective_x_base")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_config_of_the_base_tables_builds_model_and_criterion(profile):
    seen = set()
    for name in NEW_BASE_TABLES:
        for row, config in TABLES[name].row_configs(profile):
            if config.stable_hash() in seen:
                continue
            seen.add(config.stable_hash())
            # the paper profile's ImageNet weights are not needed to construct the model
            model = build_model(config.override({"model.pretrained_backbone": False}).model)
            Criterion.from_config(config)
            assert model is not None, (name, row.label)
    assert len(seen) >= 12


def test_rows_run_on_their_tables_base_or_their_own():
    bases = lambda table, profile="smoke": {r.label: c.model.base for r, c in TABLES[table].row_configs(profile)}  # noqa: E731
    assert set(bases("deta_table1_detr").values()) == {"detr_dc5"}
    assert set(bases("align_table2").values()) == {"dab_detr"}
    assert bases("align_table3") == {"DINO": "dino", "Align-DETR": "dino", "DETA (K=4)": "dino",
                                     "H-Deformable-DETR": "two_stage_deformable"}
    for table in ("align_table4", "align_table5", "align_table6", "align_table8", "align_tableB"):
        assert set(bases(table, "paper").values()) == {"dino"}, table
    detr = [c for _, c in TABLES["deta_table1_detr"].row_configs("cpu")]
    assert {c.assign.method for c in detr} == {"hungarian", "deta_decoder_only"}
    assert [c.assign.object_balance_k for c in detr if c.assign.method != "hungarian"] == [None, 4]
    # the released code selects queries by NMS only after an IoU-assigned first stage
    assert [(c.model.query_selection, c.model.postprocess) for c in detr] == \
        [("topk", "topk"), ("topk", "nms"), ("topk", "nms")]
    # hybrid matching: 5 one-to-many queries per one-to-one query (1500 / 300 in the paper), 4 at the
    # cpu profile, whose 525 tokens do not hold 100 + 500 queries (at the paper profile 300
    # one-to-one queries, set before the ratio is resolved, not the preset's 900)
    for profile, queries, ratio in (("smoke", 20, 5), ("cpu", 100, 4), ("paper", 300, 5)):
        hybrid = [c for _, c in TABLES["align_table7"].row_configs(profile)]
        assert [(c.model.num_queries, c.model.num_queries_one2many, c.assign.hybrid_k) for c in hybrid] == \
            [(queries, ratio * queries, 6)] * 2
        assert [c.loss.cls_loss for c in hybrid] == ["focal", "ia_bce"]


def test_every_hybrid_row_trains_at_the_cpu_profile():
    # one training forward per distinct hybrid configuration: its images must hold both query groups
    configs = {c.stable_hash(): c for spec in TABLES.values() for _, c in spec.row_configs("cpu")
               if c.model.num_queries_one2many > 0}
    assert configs
    for config in configs.values():
        torch.manual_seed(0)
        model = build_model(config.override({"model.num_classes": 10}).model).train()
        size = config.data.image_size
        out = model(torch.randn(1, 3, size, size))
        assert out["one2many_outputs"]["pred_boxes"].shape[1] == config.model.num_queries_one2many


def test_deta_ablation_tables_use_the_default_setting_only_at_the_paper_profile():
    # DETA Section 5.1: ablations with 300 queries and 4 feature scales; Table 1 with the improved baseline
    def settings(table, profile):
        return {(c.model.num_queries, c.model.num_feature_levels, c.model.dim_feedforward, c.model.dropout)
                for _, c in TABLES[table].row_configs(profile)}
    assert settings("deta_table1", "paper") == {(900, 5, 2048, 0.0)}
    for table in ("deta_table5", "deta_table6", "deta_table7", "deta_table8", "growth_k4_vs_kinf"):
        assert settings(table, "paper") == {(300, 4, 1024, 0.1)}, table
    # the laptop profiles keep one model, so the ablation tables share Table 1's runs there
    for profile in ("smoke", "cpu"):
        assert settings("deta_table8", profile) == settings("deta_table1", profile)
        assert {r.run_id for r in plan_runs("deta_table1", profile)} < {r.run_id for r in plan_runs("deta_table8", profile)}
    assert not {r.run_id for r in plan_runs("deta_table1", "paper")} & {r.run_id for r in plan_runs("deta_table8", "paper")}


def test_the_base_parameter_changes_the_runs_and_their_ids():
    dino = plan_runs("align_table4", "smoke")
    two_stage = plan_runs("align_table4", "smoke", base="two_stage_deformable")
    assert [r.rows for r in dino] == [r.rows for r in two_stage]
    assert {r.config.model.base for r in dino} == {"dino"}
    assert {r.config.model.base for r in two_stage} == {"two_stage_deformable"}
    assert not {r.run_id for r in dino} & {r.run_id for r in two_stage}
    assert {r.table for r in two_stage} == {"align_table4_on_two_stage_deformable"}
    assert plan_runs("align_table4", "smoke", base="dino") == dino  # the table's own base: the same plan
    # on the two-stage base the focal-loss baseline is DETA Table 1's Hungarian run; on DINO it is Table 3's DINO
    same = lambda plan, label: next(r.run_id for r in plan if label in r.rows)  # noqa: E731
    assert same(two_stage, "focal loss") == same(plan_runs("deta_table1", "smoke"), "Hungarian")
    assert same(dino, "focal loss") == same(plan_runs("align_table3", "smoke"), "DINO")
    renamed = TABLES["align_table4"].on_base("two_stage_deformable")
    assert renamed.paper_stem == "align_table4" and renamed.title.endswith("[on the two_stage_deformable base]")
    with pytest.raises(ValueError, match="deta_table1 runs on model.base in \\(two_stage_deformable\\), not 'dino'"):
        plan_runs("deta_table1", "smoke", base="dino")
    with pytest.raises(ValueError, match="align_table5 runs on model.base in \\(dino, two_stage_deformable\\)"):
        plan_runs("align_table5", "smoke", base="dab_detr")


def test_objective_x_base_has_one_claim_per_cell_against_its_bases_hungarian():
    spec = TABLES["objective_x_base"]
    cells = {(c.model.base, c.assign.method, c.model.num_queries_one2many > 0): r.label for r, c in spec.row_configs("cpu")}
    assert set(cells) == {("two_stage_deformable", "hungarian", False), ("two_stage_deformable", "deta", False),
                          ("two_stage_deformable", "align", False), ("two_stage_deformable", "hungarian", True),
                          ("dino", "hungarian", False), ("dino", "deta", False), ("dino", "align", False)}
    baseline = {base: label for (base, method, hybrid), label in cells.items() if method == "hungarian" and not hybrid}
    assert len(spec.claims) == len(cells) - len(baseline) == 5
    claimed = set()
    for claim in spec.claims:
        assert claim.direction == ">" and sorted(claim.weights.values()) == [-1.0, 1.0]
        (better,) = [label for label, w in claim.weights.items() if w > 0]
        (worse,) = [label for label, w in claim.weights.items() if w < 0]
        base = spec.row(better).base
        assert worse == baseline[base] and better != worse
        assert spec.row(better).label.split(" | ")[0] in claim.statement
        claimed.add(better)
    assert claimed == set(cells.values()) - set(baseline.values())
    assert all(row.paper is None for row in spec.rows)


def test_rows_that_name_unknown_fields_or_claims_fail_clearly():
    bad = TableSpec("t", "t", rows=(RowSpec("a", {"model.no_such_field": 1}),), claims=())
    with pytest.raises(ValueError, match="table t, row 'a'.*no_such_field"):
        bad.row_configs("smoke")
    with pytest.raises(ValueError, match="unknown rows"):
        TableSpec("t", "t", rows=(RowSpec("a", {}),), claims=(Hypothesis("x", difference("a", "b"), ">"),))


# ------------------------------------------------------------------------------- aggregation
def _synthetic_spec():
    return TableSpec(
        name="synthetic",
        title="synthetic",
        rows=(RowSpec("A", deta(4), PaperRef({"K": "4"})), RowSpec("B", deta(None), PaperRef({"K": "inf"})),
              RowSpec("C", hungarian())),
        claims=(Hypothesis("A beats B", difference("A", "B"), ">"),
                Hypothesis("A beats C", difference("A", "C"), ">"),
                Hypothesis("A below C", difference("A", "C"), "<"),
                Hypothesis("A equals B within 5", difference("A", "B"), "equivalent", margin=5.0)),
        paper_file="deta_table8",
    )


def _write_results(results_dir, spec, values):
    """values: row -> AP per seed 0, 1, 2 (other metrics = AP / 2)."""
    paths = StudyPaths.make(results_dir)
    for run in plan_runs(spec, "smoke", seeds=[0, 1, 2]):
        ap = values[run.rows[0]][run.seed]
        record = {"metrics": {m: ap / (1 if m == "AP" else 2) for m in aggregate.METRICS}, "wall_time_s": 1.0,
                  "seed": run.seed, "rows": list(run.rows)}
        path = paths.result_file(spec.name, run.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))


def test_regenerating_a_table_writes_the_same_files(tmp_path):
    """make reproduce with every run cached gives identical tables and figures (same machine and
    environment: PNG bytes depend on the matplotlib version)."""
    spec = _synthetic_spec()
    _write_results(tmp_path, spec, {"A": [10.0, 12.0, 14.0], "B": [9.0, 10.0, 11.0], "C": [5.0, 6.0, 7.0]})
    first = aggregate.aggregate_table(spec, "smoke", seeds=[0, 1, 2], results_dir=tmp_path)
    written = {key: path.read_bytes() for key, path in first.files.items()}
    again = aggregate.aggregate_table(spec, "smoke", seeds=[0, 1, 2], results_dir=tmp_path)
    assert {key: path.read_bytes() for key, path in again.files.items()} == written


def test_aggregation_of_known_results(tmp_path):
    spec = _synthetic_spec()
    values = {"A": [10.0, 12.0, 14.0], "B": [9.0, 10.0, 11.0], "C": [5.0, 6.0, 7.0]}
    _write_results(tmp_path, spec, values)
    result = aggregate.aggregate_table(spec, "smoke", seeds=[0, 1, 2], results_dir=tmp_path)
    rows = result.rows.set_index("row")
    assert rows.loc["A", "ours"] == pytest.approx(12.0)
    assert rows.loc["A", "ci95"] == pytest.approx(T_975[2] * 2.0 / math.sqrt(3))  # sd of 10, 12, 14 is 2
    assert rows.loc["B", "ci95"] == pytest.approx(T_975[2] * 1.0 / math.sqrt(3))
    assert rows.loc["A", "n_seeds"] == 3
    assert rows.loc["A", "paper"] == 47.9 and rows.loc["B", "paper"] == 46.5 and math.isnan(rows.loc["C", "paper"])
    claims = result.claims.set_index("claim")
    # A - B per seed: 1, 2, 3 -> mean 2, sd 1: interval 2 +- 2.48 straddles 0
    assert claims.loc["A beats B", "mean"] == pytest.approx(2.0)
    assert claims.loc["A beats B", "ci95"] == pytest.approx(T_975[2] / math.sqrt(3))
    assert claims.loc["A beats B", "outcome"] == "inconclusive"
    assert claims.loc["A beats B", "paper"] == pytest.approx(47.9 - 46.5)
    # A - C per seed: 5, 6, 7 -> 6 +- 2.48, wholly above 0
    assert claims.loc["A beats C", "outcome"] == "reproduced"
    assert claims.loc["A below C", "outcome"] == "not reproduced"
    assert claims.loc["A equals B within 5", "outcome"] == "reproduced"
    assert math.isnan(claims.loc["A beats C", "paper"])
    saved = pd.read_csv(result.files["csv"])
    assert list(saved["row"]) == ["A", "B", "C"] and saved["ours"].tolist() == pytest.approx([12.0, 10.0, 6.0])
    assert "| A beats C |" in result.files["markdown"].read_text()
    assert result.files["figure"].stat().st_size > 0
    result.styled().to_html()
    result.styled_claims().to_html()


def test_claims_pair_by_seed_and_skip_seeds_missing_a_row(tmp_path):
    spec = _synthetic_spec()
    values = {"A": [10.0, 12.0, 14.0], "B": [9.0, 10.0, 11.0], "C": [5.0, 6.0, 7.0]}
    _write_results(tmp_path, spec, values)
    missing = next(r for r in plan_runs(spec, "smoke", seeds=[0, 1, 2]) if r.rows == ("B",) and r.seed == 2)
    StudyPaths.make(tmp_path).result_file(spec.name, missing.run_id).unlink()
    results = aggregate.collect_results(spec, "smoke", [0, 1, 2], tmp_path)
    per_seed = aggregate.claim_contrasts(spec.claims[0], results)
    assert per_seed.to_dict() == {0: 1.0, 1: 2.0}


def test_a_result_file_without_metrics_is_a_clear_error(tmp_path):
    spec = _synthetic_spec()
    run = plan_runs(spec, "smoke", seeds=[0])[0]
    path = StudyPaths.make(tmp_path).result_file(spec.name, run.run_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"seed": 0}))
    with pytest.raises(ValueError, match=f"{run.run_id}.json: field 'metrics'"):
        aggregate.collect_results(spec, "smoke", [0], tmp_path)


# ------------------------------------------------------------------------------------ runner
def test_a_run_finished_for_one_table_is_copied_not_retrained(tmp_path):
    first = TableSpec("first", "first", rows=(RowSpec("H", hungarian()),), claims=())
    second = TableSpec("second", "second", rows=(RowSpec("baseline", hungarian()),), claims=())
    run = plan_runs(first, "smoke")[0]
    paths = StudyPaths.make(tmp_path / "results")
    paths.result_file("first", run.run_id).parent.mkdir(parents=True)
    paths.result_file("first", run.run_id).write_text(json.dumps({"metrics": {"AP": 3.0}, "table": "first"}))
    report = run_table(second, "smoke", results_dir=paths.results_dir, progress=False)
    assert [o.state for o in report.outcomes] == ["reused"]
    copied = json.loads(paths.result_file("second", run.run_id).read_text())
    assert copied["metrics"] == {"AP": 3.0} and copied["table"] == "second" and copied["rows"] == ["baseline"]
    assert not paths.cache_dir.exists()  # nothing trained


def test_a_failed_run_is_reported_with_its_log_and_the_others_finish(tmp_path, capsys):
    spec = TableSpec("mixed", "mixed", claims=(), rows=(
        RowSpec("good", hungarian()),
        RowSpec("broken", {"data.synthetic": False, "data.root": str(tmp_path / "no-such-data")}),
        RowSpec("also good", deta(4)),
    ))
    results, cache = tmp_path / "results", tmp_path / "cache"
    report = run_table(spec, "smoke", workers=2, threads_per_worker=1, results_dir=results, cache_dir=cache,
                       data_root=str(tmp_path / "data"), progress=False)
    assert sorted(o.state for o in report.outcomes) == ["failed", "trained", "trained"]
    failed = report.failed[0]
    assert failed.run.rows == ("broken",) and failed.log_file.exists()
    assert "no-such-data" in failed.log_file.read_text()
    assert str(failed.log_file) in capsys.readouterr().err
    assert len(list((results / "runs" / "mixed").glob("*.json"))) == 2
    states = {s["rows"]: s for s in table_status(spec, "smoke", results_dir=results, cache_dir=cache,
                                                  data_root=str(tmp_path / "data"))}
    assert states["broken"]["state"] == "failed" and str(failed.log_file) in states["broken"]["detail"]
    assert states["good"]["state"] == "finished"


def test_a_worker_killed_midway_fails_its_run_and_a_new_pool_trains_the_rest(tmp_path):
    import threading

    spec = TableSpec("killed", "killed", claims=(), rows=(
        RowSpec("first", hungarian()), RowSpec("second", deta(4)), RowSpec("third", deta(None))))
    cache = tmp_path / "cache"
    killed = []

    def kill_first_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for claim in cache.glob("*/claim.json"):
                try:
                    pid = json.loads(claim.read_text())["pid"]
                except (OSError, ValueError):
                    continue
                os.kill(pid, signal.SIGKILL)
                killed.append(claim.parent.name)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    report = run_table(spec, "smoke", workers=1, threads_per_worker=1, results_dir=tmp_path / "results",
                       cache_dir=cache, data_root=str(tmp_path / "data"), progress=False)
    killer.join()
    assert len(killed) == 1
    states = {o.run.run_id: o for o in report.outcomes}
    assert states[killed[0]].state == "failed" and "worker process died" in states[killed[0]].error
    assert sorted(o.state for o in report.outcomes) == ["failed", "trained", "trained"]
    assert not (cache / killed[0] / "claim.json").exists()


def _start_events(run_dir):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return sum(json.loads(line)["event"] == "start" for line in lines)


def test_a_table_run_killed_midway_resumes_without_retraining_finished_runs(tmp_path):
    results, cache, data = tmp_path / "results", tmp_path / "cache", tmp_path / "data"
    script = (f"from assignlab.study.run.runner import run_table\n"
              f"run_table('deta_table1', 'smoke', workers=1, threads_per_worker=1, results_dir={str(results)!r}, "
              f"cache_dir={str(cache)!r}, data_root={str(data)!r}, progress=False)\n")
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table_dir = results / "runs" / "deta_table1"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not list(table_dir.glob("*.json")):
            assert process.poll() is None, "the runner ended before it was killed"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = list(table_dir.glob("*.json"))
    assert 1 <= len(finished) < 3, "kill the runner while runs are left"
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    report = run_table("deta_table1", "smoke", workers=1, threads_per_worker=1, results_dir=results, cache_dir=cache,
                       data_root=str(data), progress=False)
    assert not report.failed and len(report.outcomes) == 3
    states = {o.run.run_id: o.state for o in report.outcomes}
    for name, mtime in before.items():
        run_id = name[:-5]
        assert states[run_id] == "finished"
        assert (table_dir / name).stat().st_mtime_ns == mtime
        assert _start_events(cache / run_id) == 1  # trained once
    assert len(list(table_dir.glob("*.json"))) == 3


def test_status_command_lists_every_run(tmp_path, capsys):
    assert cli_main(["study", "status", "--table", "deta_table1", "--profile", "smoke",
                     "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("missing") == 3 + 1 and "Hungarian" in out  # three runs and the summary line
    assert cli_main(["study", "status", "--table", "align_table5", "--profile", "smoke", "--base",
                     "two_stage_deformable", "--results-dir", str(tmp_path)]) == 0
    ids = {r.run_id for r in plan_runs("align_table5", "smoke", base="two_stage_deformable")}
    out = capsys.readouterr().out
    assert len(ids) == 4 and all(run in out for run in ids) and out.count("missing") == 4 + 1
    assert cli_main(["study", "list"]) == 0
    assert "align_tableB" in capsys.readouterr().out


def test_run_command_takes_several_tables_in_turn(tmp_path, capsys):
    # every run already has a result file: the command only aggregates, table after table
    paths = StudyPaths.make(tmp_path)
    for table in ("deta_table1", "deta_table7"):
        for run in plan_runs(table, "smoke"):
            record = {"metrics": {m: 30.0 + run.seed for m in aggregate.METRICS}, "wall_time_s": 1.0,
                      "seed": run.seed, "rows": list(run.rows), "config": run.config.to_dict()}
            path = paths.result_file(table, run.run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
    assert cli_main(["study", "run", "--table", "deta_table1", "--table", "deta_table7", "--profile", "smoke",
                     "--results-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.index("DETA Table 1") < out.index("DETA Table 7")
    assert (tmp_path / "tables" / "deta_table1.md").exists() and (tmp_path / "tables" / "deta_table7.md").exists()
    assert cli_main(["study", "status", "--table", "deta_table1", "--table", "deta_table7", "--profile", "smoke",
                     "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== deta_table1" in out and "== deta_table7" in out and "missing" not in out
    # an unknown name stops the command before any table runs
    assert cli_main(["study", "run", "--table", "deta_table1", "--table", "deta_table4", "--profile", "smoke",
                     "--results-dir", str(tmp_path / "other")]) == 2
    assert "unknown table(s) deta_table4" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="unknown study table 'deta_table4'"):
        plan_runs("deta_table4", "smoke")
    with pytest.raises(KeyError, match="unknown study profile 'gpu'"):
        plan_runs("deta_table1", "gpu")
    with pytest.raises(ValueError, match="unknown executor 'kubernetes'"):
        run_table("deta_table1", "smoke", executor="kubernetes", results_dir=tmp_path)


# --------------------------------------------------------------------------------- notebooks
def test_notebooks_on_disk_are_the_generated_ones_without_outputs():
    import nbformat

    generated = all_notebooks()
    assert set(generated) == {notebook_name(name) for name in TABLES} | {"inspect_matches", "runtime"}
    for name, notebook in generated.items():
        on_disk = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        assert [c.source for c in on_disk.cells] == [c.source for c in notebook.cells], name
        code = [c for c in on_disk.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert code[0].metadata.get("tags") == ["parameters"]
        for statement in ast.parse(code[0].source).body:  # literals only
            assert isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant), name
        parameters = {s.targets[0].id for s in ast.parse(code[0].source).body}
        assert {"profile", "seeds", "workers", "executor", "data_root", "device", "results_dir"} <= parameters
        if name in TABLES and TABLES[name].other_bases:  # Align-DETR tables: on DINO unless base says otherwise
            assert f'base = "{TABLES[name].base}"' in code[0].source and "base=base)" in code[2].source, name
        elif name in TABLES:
            assert "base" not in parameters, name


def test_profiles_read_their_presets():
    from assignlab.presets import preset

    for profile in PROFILES.values():
        assert profile.base_config() == preset(profile.preset)
        for base in ("dino", "detr_dc5", "dab_detr"):
            config = profile.base_config(base)
            assert config == preset(profile.preset_for(base)) and config.model.base == base
    assert PROFILES["paper"].preset_for("dino") == "dino-r50-1x"
    with pytest.raises(KeyError, match="profile 'smoke' has no preset for model.base='detr'"):
        PROFILES["smoke"].base_config("detr")
