"""Every study notebook executes through papermill at the smoke profile (runs shared between
tables are trained once: all notebooks write to one results folder)."""
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from assignlab.study.index import build_index
from assignlab.study.specs import TABLES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [*TABLES, "inspect_matches", "runtime"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("study")


def _execute(name: str, workspace: Path) -> nbformat.NotebookNode:
    import papermill

    output = workspace / "results" / "notebooks" / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(ROOT / "notebooks" / f"{name}.ipynb"), str(output), kernel_name="python3", cwd=str(ROOT),
        progress_bar=False,
        parameters={"profile": "smoke", "workers": 2, "data_root": str(workspace / "data"),
                    "results_dir": str(workspace / "results")},
    )
    return nbformat.read(output, as_version=4)


@pytest.mark.parametrize("name", list(TABLES))
def test_table_notebook_runs_at_the_smoke_profile(name, workspace):
    executed = _execute(name, workspace)
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    rows = pd.read_csv(workspace / "results" / "tables" / f"{name}.csv")
    assert list(rows["row"][: len(TABLES[name].rows)]) == [r.label for r in TABLES[name].rows]
    assert (rows["n_seeds"][: len(TABLES[name].rows)] == 1).all()  # every run finished
    claims = pd.read_csv(workspace / "results" / "tables" / f"{name}_claims.csv")
    assert (claims["verdict"] == "inconclusive (1 seed)").all()
    assert (workspace / "results" / "figures" / f"{name}.png").exists()


def test_inspect_matches_notebook_runs_at_the_smoke_profile(workspace):
    _execute("inspect_matches", workspace)
    recall = pd.read_csv(workspace / "results" / "tables" / "align_figure1.csv")
    assert set(recall["method"]) == {"Hungarian", "B-matching (4,4)", "DETA (K=4)", "Align-DETR"}
    for figure in ("deta_figure3", "align_figure1", "align_figure4"):
        assert (workspace / "results" / "figures" / f"{figure}.png").exists()


def test_runtime_notebook_runs_at_the_smoke_profile(workspace):
    _execute("runtime", workspace)
    table = pd.read_csv(workspace / "results" / "tables" / "deta_table2.csv")
    assert list(table["module"]) == ["backbone", "transformer_encoder", "query_selection", "transformer_decoder",
                                     "postprocess_nms", "total"]
    assert table.loc[table["module"] == "total", "paper_deta_ms"].item() == 100


def test_results_index_covers_every_executed_notebook(workspace):
    text = build_index(workspace / "results")
    for name in TABLES:
        if (workspace / "results" / "tables" / f"{name}.md").exists():
            assert f"[table](tables/{name}.md)" in text and f"[notebook](notebooks/{name}.ipynb)" in text
    assert "inconclusive (1 seed)" in text
