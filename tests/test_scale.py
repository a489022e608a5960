"""The scale ladder: its rungs, its tables (rung S shares the paper tables' runs) and the trend of
each claim's difference against compute, checked on hand-made differences."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from assignlab.engine import execution
from assignlab.engine.compute import training_gflop_per_image
from assignlab.presets import LADDER_MODELS
from assignlab.presets import preset
from assignlab.study.report.growth import GROWING, SHRINKING, STABLE
from assignlab.study.report.scale import AWAY, NEITHER, TOWARDS, claim_trends, ladder_for
from assignlab.study.report.study_claims import claim_sources
from assignlab.study.run.plan import plan_runs
from assignlab.study.run.runner import warn_slow_precision
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.paper import paper_value
from assignlab.study.tables.profiles import LADDER, table_file_stem
from assignlab.study.tables.scale import SCALE_BASE_ROWS, SCALE_CLAIMS, SCALE_ROWS, SCALE_TABLES


def _flat(config) -> dict:
    return {f"{section}.{key}": value for section, fields in config.to_dict().items() if isinstance(fields, dict)
            for key, value in fields.items()}


@pytest.mark.parametrize("size", list(LADDER_MODELS))
def test_a_rung_is_the_cpu_profile_with_its_larger_model_only(size):
    cpu, rung = _flat(preset("cpu")), _flat(preset(size))
    changed = {key for key in cpu if cpu[key] != rung[key]}
    assert changed == {key for key, value in LADDER_MODELS[size].items() if cpu[key] != value}
    assert {"train.epochs", "train.lr", "data.synth_train_images"}.isdisjoint(changed)  # same recipe and schedule
    dino = preset(f"{size}-dino")
    assert dino.model.base == "dino" and dino.model.hidden_dim == LADDER_MODELS[size]["model.hidden_dim"]


def test_rung_s_shares_the_paper_tables_runs():
    scale = {row: run.run_id for run in plan_runs("scale", "cpu") for row in run.rows}
    for label, table, source_row in SCALE_ROWS:
        source = {row: run.run_id for run in plan_runs(table, "cpu", seeds=[0, 1, 2]) for row in run.rows}
        assert scale[label] == source[source_row], label
    assert scale["Hungarian (Table 7)"] == scale["Hungarian"]  # the ablation setting is the paper profile's only
    bases = {row: run.run_id for run in plan_runs("scale_bases", "cpu") for row in run.rows}
    for label, table, source_row in SCALE_BASE_ROWS:
        assert bases[label] == next(run.run_id for run in plan_runs(table, "cpu", seeds=[0]) if source_row in run.rows)


def test_the_larger_rungs_are_other_runs_with_three_seeds():
    for profile in ("cpu-m", "cpu-l"):
        runs = plan_runs("scale", profile)
        assert len(runs) == 7 * 3 and {run.seed for run in runs} == {0, 1, 2}
        assert not {run.run_id for run in runs} & {run.run_id for run in plan_runs("scale", "cpu")}
        assert all(run.config.model.num_queries == 300 for run in runs)
    # M trains in fp32 like S (only the model changes), L in bf16
    assert {run.config.train.precision for table in SCALE_TABLES for run in plan_runs(table, "cpu-m")} == {"fp32"}
    assert {run.config.train.precision for table in SCALE_TABLES for run in plan_runs(table, "cpu-l")} == {"bf16"}
    # DETR-DC5 selects its queries among 12 x 12 stride-16 tokens at rung M's 192 px
    for profile, side in (("cpu-m", 192), ("cpu-l", 256)):
        detr = next(run for run in plan_runs("scale_bases", profile) if "DETR-DC5" in run.rows[0])
        assert detr.config.model.num_queries == 100 <= (side // 16) ** 2
        assert len(plan_runs("scale_bases", profile)) == 2


def test_rows_from_several_paper_tables_find_their_numbers():
    spec = TABLES["scale"]
    hungarian_t7 = spec.row("Hungarian (Table 7)").paper
    assert paper_value(spec.paper_stem_of(hungarian_t7), hungarian_t7) == 43.2
    assert paper_value(spec.paper_stem_of(spec.row("Hungarian").paper), spec.row("Hungarian").paper) == 47.7
    assert paper_value(spec.paper_stem_of(spec.row("Align-DETR | DINO").paper), spec.row("Align-DETR | DINO").paper) == 50.2


def test_the_larger_rungs_write_their_own_files_and_stay_out_of_the_study_wide_claims():
    assert table_file_stem("scale", "cpu") == "scale" and table_file_stem("deta_table1", "smoke") == "deta_table1"
    assert table_file_stem("scale", "cpu-m") == "scale-cpu-m" and table_file_stem("scale_bases", "cpu-l") == "scale_bases-cpu-l"
    assert not {source.table for source in claim_sources()} & set(SCALE_TABLES)
    assert ladder_for("cpu") == LADDER and ladder_for("smoke") == {"S": "smoke"}


def test_training_gflop_per_image_grows_with_the_model_and_does_not_depend_on_the_batch():
    smoke = preset("smoke")
    one, two = (training_gflop_per_image(smoke.override({"train.batch_size": b})) for b in (1, 2))
    assert one == pytest.approx(two, rel=0.02)
    assert training_gflop_per_image(smoke.override({"model.hidden_dim": 64, "model.dim_feedforward": 128})) > 1.5 * one


def _contrasts(claim: str, slopes: dict[int, float], intercept: float, gflops=(1.5, 12.0, 96.0)) -> pd.DataFrame:
    """d_s(rung) = intercept + slope_s * log2(gflop / gflops[0]) exactly."""
    lines = []
    for seed, slope in slopes.items():
        for rung, gflop in zip(LADDER, gflops):
            lines.append({"claim": claim, "rung": rung, "gflop": gflop, "seed": seed,
                          "d": intercept + slope * math.log2(gflop / gflops[0])})
    return pd.DataFrame(lines)


def _per_rung(contrasts: pd.DataFrame, papers: dict[str, float]) -> pd.DataFrame:
    """The per-rung lines claim_trends reads: the mean d of each claim at each rung, the paper's value."""
    means = contrasts.groupby(["claim", "rung"], as_index=False)["d"].mean().rename(columns={"d": "mean"})
    return means.assign(paper=means["claim"].map(papers))


def test_trend_slopes_and_verdicts_on_hand_made_differences():
    claims = [c.statement for _, c in SCALE_CLAIMS]
    growing, shrinking, stable, partial, no_runs, overshoot, unpaired = claims
    frames = [
        _contrasts(growing, {0: 1.0, 1: 1.2, 2: 0.8}, intercept=1.0),      # 1 -> 7, towards a paper value of +8
        _contrasts(shrinking, {0: -0.8, 1: -0.7, 2: -0.9}, intercept=8.0),   # 8 -> 3.2, towards +2.5
        _contrasts(stable, {0: 0.01, 1: -0.01, 2: 0.0}, intercept=0.3),      # inside +-0.5 per doubling
        _contrasts(partial, {0: 1.0, 1: 1.0, 2: 1.0}, intercept=0.0).query("rung != 'L'"),  # L still training
        _contrasts(overshoot, {0: 1.0, 1: 1.1, 2: 0.9}, intercept=1.0),    # 1 -> 7, past a paper value of +1.5
        _contrasts(unpaired, {0: 1.0, 1: 1.0}, intercept=0.0).query("(seed == 0 and rung == 'S') or "
                                                                     "(seed == 1 and rung == 'M')"),
    ]
    contrasts = pd.concat(frames, ignore_index=True)
    per_rung = _per_rung(contrasts, {growing: 8.0, shrinking: 2.5, stable: 1.5, partial: -3.0, overshoot: 1.5})
    trends = claim_trends(contrasts, per_rung, LADDER).set_index("claim")
    assert trends.loc[growing, "slope"] == pytest.approx(1.0)  # compute x8 per rung: 3 doublings
    assert trends.loc[growing, "n_seeds"] == 3
    sd = np.std([1.0, 1.2, 0.8], ddof=1)
    assert trends.loc[growing, "ci95"] == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert (trends.loc[growing, "verdict"], trends.loc[growing, "towards_paper"]) == (GROWING, TOWARDS)
    assert (trends.loc[shrinking, "verdict"], trends.loc[shrinking, "towards_paper"]) == (SHRINKING, TOWARDS)
    assert (trends.loc[stable, "verdict"], trends.loc[stable, "towards_paper"]) == (STABLE, NEITHER)
    assert (trends.loc[overshoot, "verdict"], trends.loc[overshoot, "towards_paper"]) == (GROWING, AWAY)
    # over the rungs done: S and M, and moving away from a paper value below the smallest rung's d
    assert trends.loc[partial, "covered"] == "S, M" and trends.loc[partial, "slope"] == pytest.approx(1.0)
    assert trends.loc[partial, "towards_paper"] == AWAY
    assert trends.loc[no_runs, "verdict"] == "no trend (no runs)"
    assert trends.loc[unpaired, "verdict"] == "no trend (no seed at every rung of S, M yet)"
    one_rung = claim_trends(contrasts[contrasts["rung"] == "S"], per_rung, LADDER).set_index("claim")
    assert one_rung.loc[growing, "verdict"] == "no trend (one rung)" and math.isnan(one_rung.loc[growing, "slope"])


def test_chosen_rungs_keep_the_ladders_order_and_unknown_ones_are_refused():
    assert list(ladder_for("cpu", ["L", "S"])) == ["S", "L"]
    with pytest.raises(ValueError, match=r"rungs \['M'\] are not on the ladder of profile 'smoke'"):
        ladder_for("smoke", ["S", "M"])


def test_the_ladders_files_and_index_entry_without_runs(tmp_path):
    from assignlab.study.report.index import scale_index_lines
    from assignlab.study.report.scale import scale_study

    result = scale_study("smoke", results_dir=tmp_path)
    text = result.files["markdown"].read_text()
    for heading in ("## Compute per rung", "## d per rung", "## Both verdicts per rung", "## Trend with compute",
                    "## The single-scale bases"):
        assert heading in text
    assert set(result.trends["verdict"]) == {"no trend (no runs)"} and len(result.bases) == 2
    lines = scale_index_lines(tmp_path, set(), "smoke")
    assert "[summary](tables/scale_ladder.md)" in lines[0] and "S (smoke: 0 of 7 runs; bases 0 of 2)" in lines[0]
    assert len(lines) == 1 + len(SCALE_CLAIMS) and "**no trend (no runs)**" in lines[1]


@pytest.mark.parametrize("n_seeds, words", [(1, "1 seed;"), (3, "3 seeds;")])
def test_the_index_counts_the_seeds_of_a_trend(tmp_path, n_seeds, words):
    from assignlab.study.report.index import scale_index_lines

    (tmp_path / "tables").mkdir()
    pd.DataFrame([{"claim": "a claim", "short": "a", "covered": "S, M", "slope": 0.37, "ci95": math.nan,
                   "low": math.nan, "high": math.nan, "n_seeds": n_seeds, "verdict": "inconclusive (1 seed)",
                   "towards_paper": NEITHER}]).to_csv(tmp_path / "tables" / "scale_ladder_trend.csv", index=False)
    line = scale_index_lines(tmp_path, set(), "smoke")[1]
    assert f"(rungs S, M; +0.37 AP per doubling of compute, {words} {NEITHER})" in line


def test_the_budget_of_a_rung_is_estimated_from_runs_of_its_own_model_size(tmp_path):
    import json

    from assignlab.study.budget import budget_table

    assert math.isnan(budget_table(tmp_path, "cpu-m", ["scale"]).iloc[-1]["hours_left_estimate"])
    first = plan_runs("scale", "cpu-m")[0]
    (tmp_path / "runs" / "scale").mkdir(parents=True)
    (tmp_path / "runs" / "scale" / f"{first.run_id}.json").write_text(
        json.dumps({"config": first.config.to_dict(), "wall_time_s": 2700.0}))
    table = budget_table(tmp_path, "cpu-m", ["scale"]).set_index("table")
    assert table.loc["scale", "finished"] == 1 and table.loc["scale", "hours_spent"] == 0.75
    assert table.loc["total", "hours_left_estimate"] == pytest.approx(20 * 0.75)  # 20 runs left, 45 min each
    # a finished run of the cpu profile (another model size) is not taken for rung L's
    cpu_run = plan_runs("scale", "cpu")[0]
    (tmp_path / "runs" / "scale" / f"{cpu_run.run_id}.json").write_text(
        json.dumps({"config": cpu_run.config.to_dict(), "wall_time_s": 420.0}))
    assert math.isnan(budget_table(tmp_path, "cpu-l", ["scale"]).iloc[-1]["hours_left_estimate"])
    assert budget_table(tmp_path, "cpu", ["scale"]).iloc[-1]["hours_left_estimate"] == pytest.approx(20 * 420 / 3600)


@pytest.mark.parametrize("profile", ["cpu-m", "cpu-l"])
def test_every_ladder_run_config_is_valid(profile):
    from assignlab.losses.criterion import Criterion
    from assignlab.models.build import check_model_config

    for table in SCALE_TABLES:
        for _, config in TABLES[table].row_configs(profile):
            check_model_config(config.model)
            Criterion.from_config(config)


def test_the_runner_warns_before_training_bf16_runs_on_a_cpu_that_emulates_bf16(monkeypatch):
    monkeypatch.setattr(execution, "all_cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    monkeypatch.setattr(execution.platform, "machine", lambda: "x86_64")
    with pytest.warns(UserWarning, match=r"^21 run\(s\) to train: train.precision=bf16 on a CPU without native bf16"):
        warn_slow_precision(plan_runs("scale", "cpu-l"), "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_slow_precision(plan_runs("scale", "cpu-m"), "cpu")  # fp32: nothing to say
        warn_slow_precision(plan_runs("scale", "cpu-l"), "cuda")
