"""Tables beyond the papers: schedule scaling, shared runs with the paper tables, behaviour rates
from result curves, growth trends and alignment evidence from result files."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from assignlab.config import Config
from assignlab.study.report import behaviours, evidence, growth
from assignlab.study.report.stats import Interval
from assignlab.study.run.plan import plan_runs
from assignlab.study.run.store import StudyPaths
from assignlab.study.tables.beyond import (
    ALIGNMENT_ROWS,
    GROWTH_FACTORS,
    GROWTH_PAIRS,
    GrowthPair,
    notebook_name,
)
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.overrides import ScaledSchedule, scaled_schedule
from assignlab.study.tables.profiles import get_profile

T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student t quantiles (df -> t_{0.975, df})
BEYOND = ("released_topk", "released_kcap", *(p.name for p in GROWTH_PAIRS), "alignment_evidence",
          "deta_table6_selection")
PAPER_TABLES = [name for name in TABLES if name not in BEYOND]


def _hashes(table, profile):
    return {row.label: config.stable_hash() for row, config in TABLES[table].row_configs(profile)}


# ------------------------------------------------------------------------- schedule scaling
def _schedule(epochs, drops, factor):
    config = Config().override({"train.epochs": epochs, "train.lr_drop_epochs": list(drops)})
    resolved = config.override({k: v.resolve(config) for k, v in scaled_schedule(factor).items()})
    return resolved.train.epochs, resolved.train.lr_drop_epochs


@pytest.mark.parametrize("epochs, drops, factor, expected", [
    (12, (10,), 0.5, (6, (5,))),
    (12, (10,), 2.0, (24, (20,))),
    (12, (11,), 0.5, (6, (5,))),        # 5.5 rounds (half to even) to 6: kept before the last epoch
    (4, (3,), 0.5, (2, (1,))),          # the cpu profile: 1.5 -> 2 = the last epoch -> 1
    (4, (3,), 2.0, (8, (6,))),
    (4, (4,), 0.5, (2, ())),            # a drop the base never reaches stays out
    (50, (40,), 0.5, (25, (20,))),
    (1, (), 0.5, (1, ())),              # at least one epoch
    (1, (), 2.0, (2, ())),
    (12, (3, 10), 0.25, (3, (1, 2))),   # 0.75 -> 1 and 2.5 -> 2 (half to even), both before epoch 3
    (12, (1, 3), 0.5, (6, (1, 2))),     # 0.5 -> max(1, 0) = 1; 1.5 -> 2
    (12, (3, 4), 0.5, (6, (2,))),       # 1.5 and 2 both give 2: one drop, not two
])
def test_scaled_schedule_scales_epochs_and_drops(epochs, drops, factor, expected):
    assert _schedule(epochs, drops, factor) == expected


def test_scaled_schedule_at_one_keeps_the_base_schedule_exactly():
    config = Config().override({"train.epochs": 12, "train.lr_drop_epochs": [12, 4]})  # odd, but the base's
    assert ScaledSchedule(1.0, "epochs").resolve(config) == 12
    assert ScaledSchedule(1.0, "lr_drop_epochs").resolve(config) == (12, 4)
    with pytest.raises(ValueError, match="factor must be > 0"):
        ScaledSchedule(0.0)
    with pytest.raises(ValueError, match="part must be"):
        ScaledSchedule(2.0, "warmup")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_growth_rows_train_half_once_and_twice_the_profiles_schedule(profile):
    assert [c.train.epochs for _, c in TABLES["growth_k4_vs_kinf"].row_configs("paper")] == [6, 6, 12, 12, 24, 24]
    for pair in GROWTH_PAIRS:
        configs = dict((row.label, config) for row, config in TABLES[pair.name].row_configs(profile))
        base = get_profile(profile).base_config(TABLES[pair.name].base).train.epochs
        epochs = [max(1, round(0.5 * base)), base, 2 * base]
        for arm in pair.arms:
            assert [configs[pair.label(arm, f)].train.epochs for f in GROWTH_FACTORS] == epochs, pair.name
        # apart from the schedule, every length is the same config
        stripped = {c.override({"train.epochs": 1, "train.lr_drop_epochs": []}).stable_hash()
                    for label, c in configs.items() if label.startswith(pair.arms[0])}
        assert len(stripped) == 1


# --------------------------------------------------------------------- runs shared with papers
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_growth_1x_rows_are_the_paper_tables_runs(profile):
    for pair in GROWTH_PAIRS:
        own, source = _hashes(pair.name, profile), _hashes(pair.source, profile)
        assert own[pair.better_label(1.0)] == source[pair.better]
        assert own[pair.worse_label(1.0)] == source[pair.worse]
        assert own[pair.better_label(2.0)] not in source.values()
    assert TABLES["growth_iabce_vs_focal"].base == "dino"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_alignment_evidence_row_is_a_paper_tables_run(profile):
    paper = {h for name in PAPER_TABLES for h in _hashes(name, profile).values()}
    own = _hashes("alignment_evidence", profile)
    assert len(own) == 11 and len(set(own.values())) == 11 and set(own.values()) <= paper
    for label, table, source_label in ALIGNMENT_ROWS:
        assert own[label] == _hashes(table, profile)[source_label]
    bases = {row.label: config.model.base for row, config in TABLES["alignment_evidence"].row_configs(profile)}
    assert sorted(set(bases.values())) == ["dab_detr", "detr_dc5", "dino", "two_stage_deformable"]
    assert bases["Align-DETR | DINO"] == "dino" and bases["DETA (K=4) | DETR-DC5"] == "detr_dc5"


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_released_rows_are_the_paper_runs_and_their_fix_differs_in_one_field(profile):
    (released, fixed) = (c for _, c in TABLES["released_topk"].row_configs(profile))
    assert released.stable_hash() == _hashes("deta_table1", profile)["IoU assignment + NMS, K=4"]
    assert (released.assign.topk_behaviour, fixed.assign.topk_behaviour) == ("released", "fixed")
    assert fixed.override({"assign.topk_behaviour": "released"}) == released
    (released, per_image) = (c for _, c in TABLES["released_kcap"].row_configs(profile))
    assert released.stable_hash() == _hashes("align_table3", profile)["Align-DETR"]
    assert released.model.base == "dino" and per_image.assign.k_cap == "per_image"
    assert per_image.override({"assign.k_cap": "released"}) == released
    for name in ("released_topk", "released_kcap"):
        (claim,) = TABLES[name].claims
        assert claim.direction == "equivalent" and claim.margin == 1.0


def test_growth_claims_are_one_per_length_on_the_papers_side():
    for pair in GROWTH_PAIRS:
        spec = TABLES[pair.name]
        assert [c.weights for c in spec.claims] == [
            {pair.better_label(f): 1.0, pair.worse_label(f): -1.0} for f in GROWTH_FACTORS]
        assert all(c.direction == ">" for c in spec.claims)
        papered = [r.label for r in spec.rows if r.paper is not None]
        assert papered == [pair.better_label(1.0), pair.worse_label(1.0)]
    assert {notebook_name(p.name) for p in GROWTH_PAIRS} == {"growth_curves"}
    assert notebook_name("released_topk") == "released_topk"


# ---------------------------------------------------------------------------- behaviours
def test_behaviour_rates_average_the_epochs_and_take_the_last():
    curve = [
        {"epoch": 0, "train_stat_shared_images_enc": 0.5, "train_stat_shared_steps_enc": 1.0,
         "train_stat_shared_images_dec10": 0.25, "train_stat_shared_steps_dec10": 0.5,
         "train_stat_shared_images_dec2": 0.0, "train_stat_shared_steps_dec2": 0.0,
         "train_stat_carried_cap_images_enc": 0.9},
        {"epoch": 1, "train_stat_shared_images_enc": 0.1, "train_stat_shared_steps_enc": 0.2,
         "train_stat_shared_images_dec2": 0.3, "train_stat_shared_steps_dec2": 0.6},
    ]
    rates = behaviours.behaviour_rates(curve, "shared").set_index("output")
    assert list(rates.index) == ["enc", "dec2", "dec10"]
    assert rates.loc["enc"].tolist() == pytest.approx([0.3, 0.1, 0.6, 0.2])
    assert rates.loc["dec2"].tolist() == pytest.approx([0.15, 0.3, 0.3, 0.6])
    # dec10 reports only in epoch 0: its mean is that epoch's, the last epoch has no value
    assert rates.loc["dec10", "images_mean"] == 0.25 and math.isnan(rates.loc["dec10", "images_last"])
    carried = behaviours.behaviour_rates(curve, "carried_cap")
    assert carried["output"].tolist() == ["enc"] and carried["images_mean"].item() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown behaviour"):
        behaviours.behaviour_rates(curve, "shared_cap")


def _write_run(results_dir, table, run, record):
    path = StudyPaths.make(results_dir).result_file(table, run.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": {"AP": 1.0}, "seed": run.seed, "rows": list(run.rows), **record}))


def test_behaviour_table_reads_the_runs_result_files(tmp_path):
    rates = {0: (0.2, 0.4), 1: (0.6, 0.8)}  # seed -> (images, steps) in both epochs of the released row
    for run in plan_runs("released_topk", "smoke", seeds=[0, 1]):
        fired = rates[run.seed] if "released" in run.rows[0] else (0.0, 0.0)
        curve = [{"train_stat_shared_images_enc": fired[0], "train_stat_shared_steps_enc": fired[1],
                  "train_stat_shared_images_dec0": 0.0, "train_stat_shared_steps_dec0": 0.0,
                  "train_stat_zero_iou_images_dec0": 0.1 * run.seed, "train_stat_zero_iou_steps_dec0": 0.5}] * 2
        _write_run(tmp_path, "released_topk", run, {"curve": curve})
    summary = behaviours.behaviour_table("released_topk", "smoke", seeds=[0, 1], results_dir=tmp_path)
    released = summary[summary["row"] == "DETA (K=4), released top-K"].set_index("output")
    assert list(released.index) == ["enc", "dec0"] and (summary["n_seeds"] == 2).all()
    assert released.loc["enc", ["images_mean", "images_last", "steps_mean", "steps_last"]].tolist() == \
        pytest.approx([0.4, 0.4, 0.6, 0.6])
    assert (summary.loc[summary["row"] == "DETA (K=4), fixed top-K", "images_mean"] == 0).all()
    saved = pd.read_csv(tmp_path / "tables" / "released_topk_behaviour.csv")
    assert len(saved) == 4
    with pytest.raises(ValueError, match="no behaviour of its own"):
        behaviours.collect_behaviour_rates("deta_table1", "smoke", results_dir=tmp_path)
    zero_iou = behaviours.behaviour_table("released_topk", "smoke", seeds=[0, 1], results_dir=tmp_path,
                                          behaviour="zero_iou")
    assert list(zero_iou["output"]) == ["dec0", "dec0"] and zero_iou["images_mean"].tolist() == pytest.approx([0.05] * 2)
    assert (tmp_path / "tables" / "released_topk_behaviour_zero_iou.csv").exists()


# -------------------------------------------------------------------------------- growth
PAIR = GrowthPair("synthetic_growth", "synthetic", "deta_table8", "K=4", "K=inf", ("A", "B"))


def _growth_results(differences):
    """differences: factor -> per-seed difference; arm B is 40 + seed, arm A = B + difference."""
    lines = []
    for factor, values in differences.items():
        for seed, d in enumerate(values):
            lines.append({"row": PAIR.label("B", factor), "seed": seed, "AP": 40.0 + seed})
            lines.append({"row": PAIR.label("A", factor), "seed": seed, "AP": 40.0 + seed + d})
    return pd.DataFrame(lines)


def test_growth_differences_and_trend_of_a_hand_worked_case():
    # per seed, d = a_s + b_s * log2(factor): slopes b = 2, 2.5, 3 per doubling
    results = _growth_results({0.5: [-2.0, -1.5, -2.0], 1.0: [0.0, 1.0, 1.0], 2.0: [2.0, 3.5, 4.0]})
    differences = growth.growth_differences(PAIR, results)
    assert len(differences) == 9 and set(differences["pair"]) == {"synthetic_growth"}
    summary = growth.summarize_growth(differences).set_index("factor")
    assert summary.loc[2.0, "mean"] == pytest.approx(9.5 / 3)
    sd = np.std([2.0, 3.5, 4.0], ddof=1)
    assert summary.loc[2.0, "ci95"] == pytest.approx(T_975[2] * sd / math.sqrt(3))
    slopes = growth.seed_slopes(differences)
    assert slopes["slope"].tolist() == pytest.approx([2.0, 2.5, 3.0])
    (trend,) = growth.growth_trends(differences).to_dict("records")
    assert trend["slope"] == pytest.approx(2.5) and trend["ci95"] == pytest.approx(T_975[2] * 0.5 / math.sqrt(3))
    assert trend["verdict"] == "growing"  # 2.5 +- 1.24: [1.26, 3.74]
    # slopes 1, 2, 3 (sd 1): 2 +- 2.48 reaches below 0 and beyond the stable band
    wider = _growth_results({0.5: [-1.0, -1.0, -2.0], 1.0: [0.0, 1.0, 1.0], 2.0: [1.0, 3.0, 4.0]})
    assert growth.growth_trends(growth.growth_differences(PAIR, wider))["verdict"].item() == "inconclusive"


def test_a_seed_missing_a_length_is_left_out_of_the_trend():
    results = _growth_results({0.5: [0.0, 0.0], 1.0: [1.0, 2.0], 2.0: [2.0, 4.0]})
    results = results[~((results["seed"] == 1) & (results["row"] == PAIR.label("A", 0.5)))]
    differences = growth.growth_differences(PAIR, results)
    assert len(differences) == 5
    assert growth.seed_slopes(differences)["seed"].tolist() == [0]
    assert growth.growth_trends(differences)["verdict"].item() == "inconclusive (1 seed)"


@pytest.mark.parametrize("low, high, expected", [
    (0.1, 0.3, "growing"),        # wholly above 0 comes first, however small
    (-2.0, -0.2, "shrinking"),
    (-0.4, 0.45, "stable"),
    (-0.6, 0.3, "inconclusive"),
    (-0.3, 0.5, "inconclusive"),  # the band is open
])
def test_trend_verdict_follows_the_slopes_interval(low, high, expected):
    interval = Interval((low + high) / 2, (high - low) / 2, 4)
    assert growth.trend_verdict(interval) == expected


def test_trend_verdicts_on_simulated_seeds():
    rng = np.random.default_rng(0)
    log2 = np.log2(GROWTH_FACTORS)

    def verdict(slope, noise, seeds=8):
        per_seed = [2.0 + slope * log2 + rng.normal(0, noise, size=3) for _ in range(seeds)]
        results = _growth_results({f: [d[i] for d in per_seed] for i, f in enumerate(GROWTH_FACTORS)})
        return growth.growth_trends(growth.growth_differences(PAIR, results))["verdict"].item()

    assert verdict(2.0, 0.2) == "growing"
    assert verdict(-2.0, 0.2) == "shrinking"
    assert verdict(0.0, 0.1) == "stable"
    assert verdict(0.0, 5.0) == "inconclusive"


def test_growth_study_reads_the_growth_tables_and_writes_its_files(tmp_path):
    # AP of a run: 31 + 2 * log2(factor) for the better arm, 30 for the other, whatever the seed
    for pair in GROWTH_PAIRS:
        arm_of = {pair.label(arm, f): (arm, f) for arm in pair.arms for f in GROWTH_FACTORS}
        for run in plan_runs(pair.name, "paper", seeds=[0, 1]):
            arm, factor = arm_of[run.rows[0]]
            ap = 31.0 + 2.0 * math.log2(factor) if arm == pair.arms[0] else 30.0
            _write_run(tmp_path, pair.name, run, {"metrics": {"AP": ap}})
    result = growth.growth_study("paper", seeds=[0, 1], results_dir=tmp_path)
    pairs = len(GROWTH_PAIRS)
    assert result.summary["mean"].tolist() == pytest.approx([-1.0, 1.0, 3.0] * pairs)
    assert result.trends["slope"].tolist() == pytest.approx([2.0] * pairs)
    assert result.trends["ci95"].tolist() == pytest.approx([0.0] * pairs)
    assert list(result.trends["verdict"]) == ["growing"] * pairs
    assert pd.read_csv(result.files["trend_csv"])["pair"].tolist() == [p.name for p in GROWTH_PAIRS]
    assert result.figure_path.stat().st_size > 0
    result.styled_summary().to_html()
    result.styled_trends().to_html()


def test_slopes_use_the_length_actually_trained():
    # epochs are whole: at the cpu profile 0.5x of 5 epochs is 2 epochs, a length of 0.4
    assert growth.schedule_lengths(GROWTH_PAIRS[0], "cpu") == {0.5: 0.4, 1.0: 1.0, 2.0: 2.0}
    assert growth.schedule_lengths(GROWTH_PAIRS[0], "paper") == {0.5: 0.5, 1.0: 1.0, 2.0: 2.0}
    lengths = {0.5: 0.4, 1.0: 1.0, 2.0: 2.0}
    lines = []
    for factor, length in lengths.items():  # difference = 3 * log2(length) for both seeds
        for seed in (0, 1):
            lines += [{"row": PAIR.better_label(factor), "seed": seed, "AP": 40.0 + 3.0 * math.log2(length)},
                      {"row": PAIR.worse_label(factor), "seed": seed, "AP": 40.0}]
    differences = growth.growth_differences(PAIR, pd.DataFrame(lines), lengths=lengths)
    assert differences["length"].tolist() == [0.4, 0.4, 1.0, 1.0, 2.0, 2.0]
    assert growth.growth_trends(differences)["slope"].item() == pytest.approx(3.0)


def test_growth_study_with_runs_of_one_pair_only(tmp_path):
    pair = GROWTH_PAIRS[-1]
    arm_of = {pair.label(arm, f): arm for arm in pair.arms for f in GROWTH_FACTORS}
    for run in plan_runs(pair.name, "paper", seeds=[0, 1]):
        ap = 31.0 + run.seed if arm_of[run.rows[0]] == pair.arms[0] else 30.0
        _write_run(tmp_path, pair.name, run, {"metrics": {"AP": ap}})
    result = growth.growth_study("paper", seeds=[0, 1], results_dir=tmp_path)
    trends = result.trends.set_index("pair")
    assert trends.loc[pair.name, "slope"] == pytest.approx(0.0)
    assert (trends.drop(index=pair.name)["verdict"] == "inconclusive (no runs)").all()


def test_growth_study_without_runs_says_so(tmp_path):
    result = growth.growth_study("smoke", results_dir=tmp_path)
    assert result.summary.empty and list(result.trends["verdict"]) == ["inconclusive (no runs)"] * len(GROWTH_PAIRS)


# ---------------------------------------------------------------------- alignment evidence
def test_alignment_evidence_summarises_the_result_files_nan_aware(tmp_path):
    # seed 0, 1, 2 of every row; Align-DETR | DINO has pearson_r 0.5, 0.6, 0.7 and the DINO
    # baseline 0.2, 0.2, 0.5; seed 2 of the baseline has no small objects; Hungarian | DETR-DC5
    # seed 1 has no diagnostics at all
    pearson = {"Align-DETR | DINO": [0.5, 0.6, 0.7], "Hungarian | DINO": [0.2, 0.2, 0.5]}
    for run in plan_runs("alignment_evidence", "smoke", seeds=[0, 1, 2]):
        row = run.rows[0]
        alignment = {"br_recall_m1": 0.1 * (run.seed + 1), "pearson_r": pearson.get(row, [0.0] * 3)[run.seed],
                     "positives_per_object_last_small": 1.0 + run.seed, "matches": 10.0}
        if row == "Hungarian | DINO" and run.seed == 2:
            del alignment["positives_per_object_last_small"]
        if row == "Hungarian | DETR-DC5" and run.seed == 1:
            alignment = None
        _write_run(tmp_path, "alignment_evidence", run, {"alignment": alignment})
    result = evidence.alignment_study("alignment_evidence", "smoke", seeds=[0, 1, 2], results_dir=tmp_path)
    summary = result.summary.set_index(["row", "metric"])
    assert summary.loc[("Align-DETR | DINO", "pearson_r"), "mean"] == pytest.approx(0.6)
    assert summary.loc[("Align-DETR | DINO", "pearson_r"), "ci95"] == pytest.approx(T_975[2] * 0.1 / math.sqrt(3))
    small = summary.loc[("Hungarian | DINO", "positives_per_object_last_small")]
    assert small["n_seeds"] == 2 and small["mean"] == pytest.approx(1.5)
    assert small["ci95"] == pytest.approx(T_975[1] * np.std([1.0, 2.0], ddof=1) / math.sqrt(2))
    assert summary.loc[("Hungarian | DETR-DC5", "br_recall_m1"), "n_seeds"] == 2
    assert summary.loc[("Hungarian | DINO", "positives_per_object_enc_large"), "n_seeds"] == 0
    assert len(result.summary) == 11 * len(evidence.ALIGNMENT_METRICS)
    claims = result.claims.set_index("claim")
    figure4 = next(c for c in claims.index if "Figure 4" in c)
    # paired differences 0.3, 0.4, 0.2: mean 0.3, sd 0.1 -> [0.05, 0.55], above 0
    assert claims.loc[figure4, "mean"] == pytest.approx(0.3) and claims.loc[figure4, "n_seeds"] == 3
    assert claims.loc[figure4, "low"] > 0
    matrix = evidence.alignment_matrix(result.summary)
    assert matrix.loc["Align-DETR | DINO", "pearson_r"] == f"0.60 ± {T_975[2] * 0.1 / math.sqrt(3):.2f}"
    assert matrix.loc["Hungarian | DINO", "positives_per_object_enc_large"] == ""
    assert list(matrix.index) == [r.label for r in TABLES["alignment_evidence"].rows]
    for path in result.files.values():
        assert path.exists()
    result.styled().to_html()


def test_alignment_claims_between_untrained_detectors_get_no_verdict(tmp_path):
    # Pearson r rises by 0.3, 0.35, 0.25 on both bases (p = 0.009 each, 0.018 after Holm over the
    # two), but the DAB-DETR rows stay near chance (AP < 5)
    pearson = {"Align-DETR | DINO": [0.5, 0.6, 0.7], "Hungarian | DINO": [0.2, 0.25, 0.45],
               "Align-DETR | DAB-DETR": [0.5, 0.6, 0.7], "Hungarian | DAB-DETR": [0.2, 0.25, 0.45]}
    for run in plan_runs("alignment_evidence", "smoke", seeds=[0, 1, 2]):
        row = run.rows[0]
        ap = 0.1 if row.endswith("DAB-DETR") else 30.0
        _write_run(tmp_path, "alignment_evidence", run, {
            "metrics": {"AP": ap}, "alignment": {"pearson_r": pearson.get(row, [0.0] * 3)[run.seed]}})
    result = evidence.alignment_study("alignment_evidence", "smoke", seeds=[0, 1, 2], results_dir=tmp_path)
    verdicts = result.claims.set_index("claim")["verdict"]
    assert verdicts[next(c for c in verdicts.index if "DAB-DETR" in c)] == "uninformative (untrained)"
    assert verdicts[next(c for c in verdicts.index if "Figure 4" in c)] == "reproduced"
    assert result.per_seed.groupby("row")["AP"].mean()["Hungarian | DAB-DETR"] == pytest.approx(0.1)


# ------------------------------------------------------------ B-matching query selection
@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_selection_table_repeats_table6_rows_and_changes_only_the_selection(profile):
    table6 = {r.rows[0]: r.run_id for r in plan_runs("deta_table6", profile)}
    rows = {r.label: c for r, c in TABLES["deta_table6_selection"].row_configs(profile)}
    runs = {r.rows[0]: r.run_id for r in plan_runs("deta_table6_selection", profile)}
    for b in (4, 8):
        topk, nms = rows[f"B=({b},1), top-k selection"], rows[f"B=({b},1), NMS selection"]
        assert runs[f"B=({b},1), top-k selection"] == table6[f"B=({b},1)"]  # the same runs
        assert (topk.model.query_selection, nms.model.query_selection) == ("topk", "nms")
        assert nms.override({"model.query_selection": "topk"}) == topk
        assert (nms.assign.first_stage_b, nms.assign.second_stage_b) == (b, 1)
