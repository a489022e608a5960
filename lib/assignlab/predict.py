"""``python -m assignlab predict --checkpoint CKPT --image FILE [--out FILE.png] [--score-threshold 0.3]``:
detections on one image as JSON on stdout (boxes xyxy in pixels of the image, labels with their
category ids and names when known, scores) and, on request, the image with its boxes drawn."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a run's checkpoint.pth or an imported one")
    parser.add_argument("--image", required=True, help="an image file (any format PIL reads)")
    parser.add_argument("--out", default=None, help="write the image with its boxes drawn here (PNG)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="keep detections scoring at least this")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.postprocess=topk")


def label_metadata(state: dict[str, Any], cfg) -> tuple[list[int | None] | None, dict[int, str]]:
    """(category id of each label, name of each label) for a checkpoint, as far as it is known.

    Imported checkpoints carry both. A trained run's labels are the contiguous indices of its
    dataset's categories (sorted by id), read from the synthetic category table or from the
    annotation file of its validation split when that file exists.
    """
    if state.get("label_to_category_id") is not None or state.get("category_names"):
        names = {int(k): v for k, v in (state.get("category_names") or {}).items()}
        ids = state.get("label_to_category_id")
        return ids, ({label: names[c] for label, c in enumerate(ids) if c in names} if ids is not None else names)
    categories = []
    if cfg.data.synthetic:
        from assignlab.data.synthetic import category_table

        categories = category_table()
    else:
        from assignlab.data.build import split_paths

        ann_file = split_paths(cfg.data, cfg.data.val_split)[1]
        if ann_file.is_file():
            categories = json.loads(ann_file.read_text()).get("categories", [])
    categories = sorted(categories, key=lambda c: c["id"])
    if len(categories) != cfg.model.num_classes:
        return None, {}
    return [c["id"] for c in categories], {i: c["name"] for i, c in enumerate(categories)}


@torch.no_grad()
def predict_image(model: torch.nn.Module, postprocess, image, cfg, device: torch.device) -> dict[str, torch.Tensor]:
    """Detections on one PIL image: {"boxes" [n, 4] xyxy pixels of ``image``, "scores" [n], "labels" [n]}."""
    from assignlab.data.transforms import DetectionTransform

    transform = DetectionTransform(cfg.data.train_transform, train=False, image_size=cfg.data.image_size)
    tensor, _ = transform(image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)})
    outputs = model(tensor[None].to(device))
    detections = postprocess(outputs, torch.tensor([[image.height, image.width]], device=device))[0]
    return {k: v.cpu() for k, v in detections.items()}


def draw_detections(image, detections: list[dict[str, Any]], out: Path) -> Path:
    """Save ``image`` with each detection's box and caption to ``out`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assignlab.analysis.draw import draw_boxes

    dpi = 100
    scale = max(1.0, 480 / min(image.width, image.height))  # small images are enlarged so captions stay legible
    figure = plt.figure(figsize=(image.width * scale / dpi, image.height * scale / dpi), dpi=dpi)
    ax = figure.add_axes([0, 0, 1, 1])
    captions = [d["name"] if d["name"] is not None else str(d["label"]) for d in detections]
    draw_boxes(ax, image, torch.tensor([d["box"] for d in detections]).reshape(-1, 4),
               labels=list(range(len(detections))), names=captions, scores=[d["score"] for d in detections],
               color="yellow")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    figure.savefig(tmp, dpi=dpi)
    plt.close(figure)
    tmp.replace(out)
    return out


def run(args: argparse.Namespace) -> int:
    from PIL import Image, UnidentifiedImageError

    from assignlab.config import Config, parse_set_arguments
    from assignlab.engine.checkpoint import CheckpointError, load_checkpoint
    from assignlab.models.build import build_model, build_postprocessor

    try:
        state = load_checkpoint(args.checkpoint)
        image = Image.open(args.image).convert("RGB")
    except CheckpointError as err:
        print(f"predict: {err}", file=sys.stderr)
        return 2
    except (OSError, UnidentifiedImageError) as err:
        print(f"predict: {args.image}: cannot read the image ({err})", file=sys.stderr)
        return 2
    cfg = Config.from_dict(state["config"]).override(parse_set_arguments(args.set))
    device = torch.device(args.device)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    detections = predict_image(model, build_postprocessor(cfg.model), image, cfg, device)
    category_ids, names = label_metadata(state, cfg)
    keep = detections["scores"] >= args.score_threshold
    results = [
        {"box": [round(v, 2) for v in box], "score": round(score, 4), "label": label,
         "category_id": category_ids[label] if category_ids is not None else None, "name": names.get(label)}
        for box, score, label in zip(detections["boxes"][keep].tolist(), detections["scores"][keep].tolist(),
                                     detections["labels"][keep].tolist())
    ]
    report = {"image": str(args.image), "width": image.width, "height": image.height,
              "checkpoint": str(args.checkpoint), "score_threshold": args.score_threshold, "detections": results}
    if args.out:
        report["drawn"] = str(draw_detections(image, results, Path(args.out)))
    print(json.dumps(report, indent=1))
    return 0
