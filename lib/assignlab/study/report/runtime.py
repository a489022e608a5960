"""DETA Table 2 on this machine, beside the paper's V100 numbers; written to
``results/tables/deta_table2.{csv,md}`` and ``results/figures/deta_table2.png``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from assignlab.analysis.runtime import runtime_table
from assignlab.paths import in_project
from assignlab.study.report.aggregate import save_figure, to_markdown
from assignlab.study.tables.methods import deta, hungarian
from assignlab.study.tables.paper import load_paper_table
from assignlab.study.tables.profiles import get_profile


@dataclass
class RuntimeResult:
    table: pd.DataFrame             # module, deta_ms, baseline_ms, paper_deta_ms, paper_baseline_ms
    files: dict[str, Path]


def runtime_study(profile: str = "cpu", repeats: int = 20, threads: int | None = None,
                  results_dir: str | Path = "results") -> RuntimeResult:
    """Time DETA and the end-to-end baseline at ``profile``'s architecture and image size."""
    if threads:
        torch.set_num_threads(threads)
    measured = runtime_table(get_profile(profile).base_config(), {"deta_ms": deta(4), "baseline_ms": hungarian()},
                             repeats=repeats)
    paper = load_paper_table("deta_table2").set_index("module")
    table = measured.copy()
    table["paper_deta_ms"] = [float(paper.loc[m, "deta_ms"]) for m in table.index]
    table["paper_baseline_ms"] = [float(paper.loc[m, "deformable_detr_ms"]) for m in table.index]
    table = table.reset_index()
    out = in_project(results_dir)
    files = {"csv": out / "tables" / "deta_table2.csv", "markdown": out / "tables" / "deta_table2.md",
             "figure": out / "figures" / "deta_table2.png"}
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(files["csv"], index=False, float_format="%.3f")
    files["markdown"].write_text(
        "# DETA Table 2: inference time per module (ms per image)\n\n"
        f"Profile `{profile}`, {torch.get_num_threads()} CPU thread(s), mean of {repeats} repeats, batch of one; "
        "baseline = the end-to-end two-stage Deformable-DETR (top-k query selection and outputs). "
        "The paper's numbers are on a V100 with ResNet-50 at COCO resolution.\n\n" + to_markdown(table) + "\n")
    _plot(table, files["figure"])
    return RuntimeResult(table, files)


def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    modules = table[table["module"] != "total"]
    long = modules.melt(id_vars="module", value_vars=["deta_ms", "baseline_ms"], var_name="detector", value_name="ms")
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=long, y="module", x="ms", hue="detector", ax=ax)
    ax.set(title="Inference time per module on this machine", xlabel="ms per image", ylabel="")
    save_figure(fig, path)
