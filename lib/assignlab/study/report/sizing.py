"""How the cpu profile was sized: validation AP against training time for candidate configurations.

Each candidate is a run folder whose ``log.jsonl`` holds the ``start`` event (config and seed)
and one ``epoch`` event per epoch (training time, COCO metrics where evaluated). Runs stopped
early count with the epochs they finished.

    python -m assignlab.study.report.sizing results/sizing    # writes sizing.csv and sizing.png there
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from assignlab.study.report.aggregate import save_figure


def describe_candidate(config: dict[str, Any]) -> str:
    """A short label of what sizing varies: base detector (unless the two-stage one; DINO with its
    denoising number, encoder loss and content-query initialisation), image side, width, levels,
    schedule, learning rates, method (with its loss unless focal, and the IoU branch)."""
    model, train, data = config["model"], config["train"], config["data"]
    drops = ",".join(str(e) for e in train["lr_drop_epochs"]) or "none"
    method = config["assign"]["method"]
    if method.startswith("deta"):
        k = config["assign"]["object_balance_k"]
        method += f" K={'inf' if k is None else k}"
    if config.get("loss", {}).get("cls_loss", "focal") != "focal":
        method += f" {config['loss']['cls_loss']}"
    if model.get("iou_branch"):
        method += f", IoU branch (fusion {model.get('iou_branch_fusion', 0.0):g})"
    base = model.get("base", "two_stage_deformable")
    encoder = "selected proposals" if model.get("enc_loss_selected_only") else "every token"
    content = {"xavier": "xavier", "normal": "N(0, 1)"}[model.get("content_query_init", "normal")]
    base = {"two_stage_deformable": "",
            "dino": f"DINO dn {model.get('dn_number')}, encoder loss on {encoder}, content queries {content}, "
            }.get(base, f"{base}, ")
    return (f"{base}{data['image_size']} px, d {model['hidden_dim']}, FFN {model['dim_feedforward']}, "
            f"{model['num_feature_levels']} levels, {train['epochs']} ep (drop {drops}), "
            f"lr {train['lr']:g}, backbone lr {train['lr_backbone']:g}, {method}")


def epoch_records(log_path: str | Path) -> pd.DataFrame:
    """One line per finished epoch of a run: run, candidate, seed, epoch, images seen, cumulative
    training minutes, training images/s, and AP / AP50 where the epoch was evaluated."""
    log_path = Path(log_path)
    start, rows, minutes, seen = None, [], 0.0, 0
    for line in log_path.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            start, rows, minutes, seen = event, [], 0.0, 0  # a restarted log counts from its last start
        elif event["event"] == "epoch" and start is not None:
            minutes += event["train_time_s"] / 60
            seen += start["config"]["data"]["synth_train_images"]
            rows.append({"epoch": event["epoch"], "images_seen": seen, "train_minutes": minutes,
                         "train_images_per_s": event["train_images_per_s"],
                         "AP": event.get("AP"), "AP50": event.get("AP50")})
    if start is None:
        raise ValueError(f"{log_path}: no 'start' event (not a training log)")
    frame = pd.DataFrame(rows, columns=["epoch", "images_seen", "train_minutes", "train_images_per_s", "AP", "AP50"])
    return frame.assign(run=log_path.parent.name, candidate=describe_candidate(start["config"]), seed=start["seed"])


def sizing_table(folder: str | Path) -> pd.DataFrame:
    """Epoch records of every run folder under ``folder`` (sorted by run and epoch)."""
    logs = sorted(Path(folder).glob("*/log.jsonl"))
    if not logs:
        raise FileNotFoundError(f"{folder}: no */log.jsonl run logs")
    frame = pd.concat([epoch_records(path) for path in logs], ignore_index=True)
    return frame.sort_values(["run", "epoch"], ignore_index=True)


def plot_sizing(frame: pd.DataFrame, path: str | Path) -> Path:
    """AP and AP50 against cumulative training minutes (one core), one line per run, one colour
    per candidate configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    evaluated = frame.dropna(subset=["AP"])
    candidates = evaluated["candidate"].nunique()
    fig, axes = plt.subplots(2, 1, figsize=(11, 9 + 0.25 * candidates), sharex=True)
    for ax, metric, target in zip(axes, ("AP", "AP50"), (30, 55)):
        sns.lineplot(data=evaluated, x="train_minutes", y=metric, hue="candidate", units="run", estimator=None,
                     marker="o", ax=ax)
        ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="training time, minutes on one core", ylabel=f"validation {metric} (%)")
    axes[0].get_legend().remove()
    # below the plots, where the long candidate labels hide no line
    sns.move_legend(axes[1], "upper center", bbox_to_anchor=(0.5, -0.15), fontsize=7, title=None, frameon=False)
    return save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv if argv is not None else sys.argv[1:])[0])
    frame = sizing_table(folder)
    frame.to_csv(folder / "sizing.csv", index=False, float_format="%.2f")
    plot_sizing(frame, folder / "sizing.png")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
