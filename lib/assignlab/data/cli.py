"""``python -m assignlab data {synth,prepare,check}``."""
from __future__ import annotations

import argparse
import warnings

from assignlab.data.areas import scaled_area_ranges


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="write a synthetic COCO-format split (images/*.png + annotations/instances_<split>.json)")
    synth.add_argument("--out", required=True, help="dataset folder (created)")
    synth.add_argument("--split", default="train", help="split name, e.g. train or val")
    synth.add_argument("--images", type=int, default=1000, help="number of images")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    synth.add_argument("--size", type=int, default=256, help="image side in pixels")
    synth.add_argument("--workers", type=int, default=None, help="processes drawing images (default: up to 4)")
    prepare = sub.add_parser("prepare", help="generate a preset's synthetic train and val splits where it will read them")
    prepare.add_argument("--preset", default="cpu", help="named configuration (smoke, cpu, ...)")
    check = sub.add_parser("check", help="validate a COCO annotation file and its image folder")
    check.add_argument("--ann", required=True, help="instances_<split>.json")
    check.add_argument("--images", required=True, help="image folder")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from assignlab.data.synthetic import SynthSpec, generate_split, summarize

        ann_path = generate_split(args.out, args.split, SynthSpec(images=args.images, size=args.size, seed=args.seed), workers=args.workers)
        stats = summarize(ann_path)
        small_max, medium_max = scaled_area_ranges(args.size)["small"][1], scaled_area_ranges(args.size)["medium"][1]
        props = stats["size_proportions"]
        print(f"wrote {stats['images']} images to {args.out}/images and annotations to {ann_path}")
        print(f"objects: {stats['objects']} ({stats['objects_per_image_mean']:.2f} per image, at most {stats['objects_per_image_max']})")
        print(
            f"sizes (area < {small_max:.0f} / < {medium_max:.0f} / above, COCO's ranges scaled to {args.size} px): "
            f"small {100 * props['small']:.1f} %, medium {100 * props['medium']:.1f} %, large {100 * props['large']:.1f} % "
            "(COCO: 41 / 34 / 24 %)"
        )
        return 0
    if args.data_command == "prepare":
        from assignlab.data.build import dataset_root, ensure_synthetic_split
        from assignlab.presets import preset

        cfg = preset(args.preset).data
        if not cfg.synthetic:
            print(f"preset {args.preset} reads real data from {cfg.root}; nothing to generate")
            return 0
        for split in (cfg.train_split, cfg.val_split):
            print(f"{split}: {ensure_synthetic_split(cfg, split)}")
        print(f"preset {args.preset}: synthetic data ready in {dataset_root(cfg)}")
        return 0
    if args.data_command == "check":
        return check(args.ann, args.images)
    raise AssertionError(args.data_command)


def check(ann_file: str, image_dir: str) -> int:
    """``data check``: load and validate the annotation file, open every image header, print what
    was kept, clipped and dropped. Bad input raises ``DatasetError`` (one ``error:`` line, exit 2)."""
    from assignlab.data.coco import CocoDetection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below counts what the warnings would say
        dataset = CocoDetection(image_dir, ann_file)
    dataset.verify_images()
    report = dataset.report
    print(f"{ann_file}: {report.images} images, {report.annotations} annotations, {report.categories} categories: OK")
    print("\n".join(report.lines()))
    return 0
