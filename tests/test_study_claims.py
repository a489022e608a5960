"""The study-wide view of the paper claims: each contrast once, Holm and Benjamini-Hochberg over the
whole study worked by hand, untrained and own claims outside the family, the forest plot."""
import math

import pandas as pd
import pytest

from assignlab.study.report.aggregate import CLAIM_COLUMNS
from assignlab.study.report.index import build_index
from assignlab.study.report.study_claims import study_claims, write_study_claims
from assignlab.study.tables.catalogue import TABLES

K4_VS_KINF_1 = "Object balancing (K=4) improves IoU assignment"
K4_VS_KINF_8 = "Object balancing K=4 beats no balancing (K=inf)"
KINF_VS_H_1 = "IoU assignment without balancing beats Hungarian matching"
KINF_VS_H_8 = "IoU assignment without balancing beats bipartite matching"
K4_VS_H = "IoU assignment with object balancing beats Hungarian matching"


def _line(claim, p, n_seeds=5, mean=1.0, outcome="inconclusive", paper=math.nan):
    line = dict.fromkeys(CLAIM_COLUMNS, "")
    line.update(claim=claim, test="d > 0", mean=mean, ci95=0.5, low=mean - 0.5, high=mean + 0.5, n_seeds=n_seeds,
                paper=paper, p_test="t-test of d = 0", p=p, p_holm=p, outcome=outcome, verdict=outcome,
                direction_verdict=outcome, size_verdict="n/a", size_ratio=math.nan, untrained_rows=0,
                own_claim=False)
    return line


def _write(root, table, lines):
    (root / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(lines, columns=CLAIM_COLUMNS).to_csv(root / "tables" / f"{table}_claims.csv", index=False)


@pytest.fixture
def results(tmp_path):
    # the statements are the catalogue's: K=4 vs K=inf and K=inf vs Hungarian are the same runs in both tables
    assert {K4_VS_KINF_1, KINF_VS_H_1, K4_VS_H} <= {c.statement for c in TABLES["deta_table1"].claims}
    assert {K4_VS_KINF_8, KINF_VS_H_8} <= {c.statement for c in TABLES["deta_table8"].claims}
    _write(tmp_path, "deta_table1", [_line(K4_VS_H, 0.001), _line(KINF_VS_H_1, 0.02), _line(K4_VS_KINF_1, 0.3)])
    _write(tmp_path, "deta_table8", [_line(K4_VS_KINF_8, 0.5, n_seeds=3), _line(KINF_VS_H_8, 0.02),
                                     _line("K=4 beats K=1", 0.01), _line("K=1 beats bipartite matching, though both "
                                                                       "give each object one positive", 0.04)])
    _write(tmp_path, "deta_table1_detr", [_line("IoU assignment with object balancing beats Hungarian matching on "
                                                "DETR", 0.0001, outcome="uninformative (untrained)")])
    _write(tmp_path, "growth_k4_vs_kinf", [_line("K=4 beats K=inf at 1x the schedule", 0.0001)])
    return tmp_path


def test_each_contrast_counts_once_with_its_tables(results):
    claims = study_claims(results, "cpu").set_index("claim")
    assert K4_VS_KINF_8 not in claims.index and KINF_VS_H_8 not in claims.index
    # the claim with the most seeds stands for the contrast; the tables that test it are listed
    assert claims.loc[K4_VS_KINF_1, "tables"] == "deta_table1, deta_table8, growth_k4_vs_kinf"
    assert claims.loc[KINF_VS_H_1, "tables"] == "deta_table1, deta_table8"
    assert claims.loc[K4_VS_H, "tables"] == "deta_table1"
    # the study's own growth claim shares the runs but is no paper claim
    assert not claims.index.str.startswith("K=4 beats K=inf at").any()


def test_holm_and_bh_over_the_studys_paper_claims_by_hand(results):
    claims = study_claims(results, "cpu").set_index("claim")
    # family: 0.001, 0.02, 0.3 (Table 1), 0.01, 0.04 (Table 8's own contrasts); m = 5, the untrained
    # DETR claim is left out. Holm: sorted 0.001, 0.01, 0.02, 0.04, 0.3 x 5, 4, 3, 2, 1
    # = 0.005, 0.04, 0.06, 0.08, 0.3 (already increasing)
    holm = claims["p_holm_study"]
    assert holm[K4_VS_H] == pytest.approx(0.005) and holm["K=4 beats K=1"] == pytest.approx(0.04)
    assert holm[KINF_VS_H_1] == pytest.approx(0.06) and holm[K4_VS_KINF_1] == pytest.approx(0.3)
    # BH: p x m / rank = 0.005, 0.025, 0.0333, 0.05, 0.3, each the minimum of itself and those above it
    bh = claims["q_bh_study"]
    assert bh[K4_VS_H] == pytest.approx(0.005) and bh["K=4 beats K=1"] == pytest.approx(0.025)
    assert bh[KINF_VS_H_1] == pytest.approx(0.1 / 3) and bh[K4_VS_KINF_1] == pytest.approx(0.3)
    # the study-wide verdict follows the study-wide Holm p: 0.02 alone passes in its table, not here
    assert claims.loc[KINF_VS_H_1, "p_holm_table"] == pytest.approx(0.02)
    assert claims.loc[K4_VS_H, "study_verdict"] == "reproduced"
    assert claims.loc["K=4 beats K=1", "study_verdict"] == "reproduced"
    assert claims.loc[KINF_VS_H_1, "study_verdict"] == "inconclusive"
    untrained = claims.loc["IoU assignment with object balancing beats Hungarian matching on DETR"]
    assert math.isnan(untrained["p_holm_study"]) and untrained["study_verdict"] == "uninformative (untrained)"


def test_the_index_opens_with_the_forest_plot_and_the_study_table(results):
    files = write_study_claims(results, "cpu")
    assert files["figure"].stat().st_size > 10_000
    assert pd.read_csv(files["csv"])["claim"].tolist()[:3] == [K4_VS_H, KINF_VS_H_1, K4_VS_KINF_1]
    index = build_index(results, "cpu")
    assert index.index("figures/study_claims.png") < index.index("## Tables")
    assert "| DETA Table 1 | " + K4_VS_H in index and "Holm over the 5 paper claims" in index


def test_the_summary_counts_the_study_wide_verdicts(results):
    from assignlab.study.report.study_claims import study_summary

    assert study_summary(study_claims(results, "cpu")) == (
        "The study tests 6 distinct paper claims. 1 compare detectors that have not learned (uninformative). Of "
        "the 5 others, with Holm's correction over the study: 2 reproduced (2 without a paper value), 0 not "
        "reproduced and 3 inconclusive (3 without a paper value).")
