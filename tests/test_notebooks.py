"""Every study notebook executes through papermill at the smoke profile (runs shared between
tables are trained once: all notebooks write to one results folder)."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from assignlab.study.report.behaviours import COMPANION_BEHAVIOURS, TABLE_BEHAVIOURS
from assignlab.study.report.evidence import ALIGNMENT_METRICS
from assignlab.study.report.index import build_index
from assignlab.study.report.shipped import SHIPPED_MODELS
from assignlab.study.tables.beyond import GROWTH_FACTORS, GROWTH_NOTEBOOK, GROWTH_PAIRS, notebook_name
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.scale import SCALE_TABLES

ROOT = Path(__file__).resolve().parents[1]
OWN_NOTEBOOK_TABLES = [name for name in TABLES if notebook_name(name) == name]  # the others: growth_curves
NOTEBOOKS = [*OWN_NOTEBOOK_TABLES, GROWTH_NOTEBOOK, "inspect_matches", "runtime"]


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


def _assert_no_errors(executed: nbformat.NotebookNode) -> None:
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    assert_figures_render(executed)


def assert_figures_render(executed: nbformat.NotebookNode, name: str = "") -> None:
    """Every cell that shows a figure carries it as image/png, and no output is a figure's bare
    text (``<Figure size ...>`` without the image beside it, what a matplotlib Figure shows when
    nothing renders it)."""
    for cell in (c for c in executed.cells if c.cell_type == "code"):
        outputs = cell.get("outputs", [])
        bare = [o for o in outputs if "<Figure size" in o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                and "image/png" not in o.get("data", {})]
        assert not bare, (name, cell.source)
        if "Image(" in cell.source or "plt." in cell.source:
            assert any("image/png" in o.get("data", {}) for o in outputs), (name, cell.source)


@pytest.mark.parametrize("name", OWN_NOTEBOOK_TABLES)
def test_table_notebook_runs_at_the_smoke_profile(name, workspace):
    _assert_no_errors(_execute(name, workspace))
    _assert_table_written(name, workspace)
    if name in TABLE_BEHAVIOURS:  # how often the released behaviour fires, per row and output
        rates = pd.read_csv(workspace / "results" / "tables" / f"{name}_behaviour.csv")
        assert set(rates["row"]) == {r.label for r in TABLES[name].rows} and (rates["n_seeds"] == 1).all()
        assert {"enc", "dec0"} <= set(rates["output"]) and rates["steps_mean"].between(0, 1).all()
    for companion in COMPANION_BEHAVIOURS.get(name, ()):  # measured in the same runs
        rates = pd.read_csv(workspace / "results" / "tables" / f"{name}_behaviour_{companion}.csv")
        assert {"enc", "dec0"} <= set(rates["output"]) and rates["images_mean"].between(0, 1).all()
    if name == "scale":  # a one-rung ladder at the smoke profile: per claim its d, no trend
        ladder = pd.read_csv(workspace / "results" / "tables" / "scale_ladder.csv")
        assert len(ladder) == len(TABLES[name].claims) and set(ladder["rung"]) == {"S"}
        assert (ladder["n_seeds"] == 1).all() and (ladder["gflop"] > 0).all()
        trends = pd.read_csv(workspace / "results" / "tables" / "scale_ladder_trend.csv")
        assert (trends["verdict"] == "no trend (one rung)").all()
        bases = pd.read_csv(workspace / "results" / "tables" / "scale_ladder_bases.csv")
        assert list(bases["row"]) == [row.label for row in TABLES["scale_bases"].rows] and (bases["n_seeds"] == 1).all()
        assert (workspace / "results" / "figures" / "scale_ladder.png").exists()
    if name == "alignment_evidence":
        summary = pd.read_csv(workspace / "results" / "tables" / "alignment_evidence_alignment.csv")
        assert len(summary) == len(TABLES[name].rows) * len(ALIGNMENT_METRICS)
        assert (summary.loc[summary["metric"] == "br_recall_m1", "n_seeds"] == 1).all()
        assert (workspace / "results" / "figures" / "alignment_evidence_alignment.png").exists()


def test_growth_notebook_runs_at_the_smoke_profile(workspace):
    _assert_no_errors(_execute(GROWTH_NOTEBOOK, workspace))
    for pair in GROWTH_PAIRS:
        _assert_table_written(pair.name, workspace)
    growth = pd.read_csv(workspace / "results" / "tables" / "growth.csv")
    assert len(growth) == len(GROWTH_PAIRS) * len(GROWTH_FACTORS) and (growth["n_seeds"] == 1).all()
    trends = pd.read_csv(workspace / "results" / "tables" / "growth_trend.csv")
    assert list(trends["pair"]) == [p.name for p in GROWTH_PAIRS]
    assert (trends["verdict"] == "inconclusive (1 seed)").all()
    assert (workspace / "results" / "figures" / "growth.png").exists()


def _assert_table_written(name: str, workspace: Path) -> None:
    rows = pd.read_csv(workspace / "results" / "tables" / f"{name}.csv")
    assert list(rows["row"][: len(TABLES[name].rows)]) == [r.label for r in TABLES[name].rows]
    assert (rows["n_seeds"][: len(TABLES[name].rows)] == 1).all()  # every run finished
    claims = pd.read_csv(workspace / "results" / "tables" / f"{name}_claims.csv")
    assert (claims["outcome"] == "inconclusive (1 seed)").all()
    assert (workspace / "results" / "figures" / f"{name}.png").exists()


def test_inspect_matches_notebook_runs_at_the_smoke_profile(workspace):
    executed = _execute("inspect_matches", workspace)
    _assert_no_errors(executed)
    recall = pd.read_csv(workspace / "results" / "tables" / "align_figure1.csv")
    assert set(recall["method"]) == {row.label for row in SHIPPED_MODELS.rows}
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
            link = f"(tables/{name}.md)" if name in SCALE_TABLES else f"[table](tables/{name}.md)"  # one ladder entry
            assert link in text and f"[notebook](notebooks/{notebook_name(name)}.ipynb)" in text
    assert "inconclusive (1 seed)" in text


def test_committed_executed_notebooks_show_their_figures():
    executed = sorted((ROOT / "results" / "notebooks").glob("*.ipynb"))
    assert {"inspect_matches", "runtime", "quickstart", "deta_table1"} <= {p.stem for p in executed}
    for path in executed:
        assert_figures_render(nbformat.read(path, as_version=4), path.name)


def test_a_table_notebook_run_from_the_notebooks_folder_finds_the_projects_results(tmp_path, monkeypatch):
    """JupyterLab starts a notebook's kernel in notebooks/: the study's folders must still be the
    project's (assignlab.paths), so the cached runs are found and nothing retrains."""
    import papermill

    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copy(ROOT / "notebooks" / "deta_table1.ipynb", project / "notebooks")
    monkeypatch.delenv("ASSIGNLAB_ROOT")
    prepared = subprocess.run([sys.executable, "-m", "assignlab", "study", "run", "--table", "deta_table1",
                               "--profile", "smoke"], cwd=project, capture_output=True, text=True,
                              timeout=600)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    files = sorted((project / "results").rglob("*.json")) + sorted((project / "work-cache").rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in files}
    output = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(project / "notebooks" / "deta_table1.ipynb"), str(output), kernel_name="python3",
                               cwd=str(project / "notebooks"), progress_bar=False, parameters={"profile": "smoke"})
    assert sorted(p.name for p in (project / "notebooks").iterdir()) == ["deta_table1.ipynb"]  # no stray folders
    after = sorted((project / "results").rglob("*.json")) + sorted((project / "work-cache").rglob("*"))
    assert {p: p.stat().st_mtime_ns for p in after if p in before} == before
    assert not [p for p in after if p not in before and p.parent.parent.name == "runs"]  # no new run trained
    table = pd.read_csv(project / "results" / "tables" / "deta_table1.csv")
    assert (table["n_seeds"][: len(TABLES["deta_table1"].rows)] == 1).all()
