"""A synthetic COCO-format detection benchmark ("synth-shapes").

Ten categories of flat objects, told apart by shape and by colour or texture (two pairs share a
shape and differ only in texture), drawn on textured, cluttered backgrounds with unannotated
distractor marks. Scenes hold 1 to 20 objects; about a quarter are crowded scenes in which
several objects of one class overlap (where duplicate removal by NMS is hard). Object sizes
follow COCO's small/medium/large proportions (about 41/34/24 %) under COCO's area ranges scaled
to the image size (see ``assignlab.data.areas``).

Every annotation is exact: ``bbox`` and ``area`` are measured on the object's visible pixels
after all occlusions, as COCO's are on its segmentation masks. No object is annotated unless at
least half of it (40 % in crowded scenes) stays visible, and nothing that looks like an object
is left unannotated.

Each image is drawn from its own random stream ``SeedSequence([seed, index])``, so the same
seed gives the same bytes whatever the number of worker processes.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm  # a widget bar in a notebook, text on a terminal

from assignlab.data.areas import scaled_area_ranges, size_proportions

# (name, shape, texture, primary RGB, secondary RGB)
CATEGORIES: tuple[tuple[str, str, str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("red_disc", "circle", "solid", (220, 40, 40), (0, 0, 0)),
    ("checkered_disc", "circle", "checker", (30, 60, 200), (235, 235, 235)),
    ("blue_square", "square", "solid", (40, 80, 220), (0, 0, 0)),
    ("striped_square", "square", "stripes", (240, 200, 30), (20, 20, 20)),
    ("green_triangle", "triangle", "solid", (40, 170, 60), (0, 0, 0)),
    ("yellow_star", "star", "solid", (245, 215, 40), (0, 0, 0)),
    ("magenta_cross", "cross", "solid", (210, 40, 190), (0, 0, 0)),
    ("orange_ring", "ring", "solid", (250, 130, 20), (0, 0, 0)),
    ("dotted_diamond", "diamond", "dots", (30, 190, 200), (250, 250, 250)),
    ("purple_hexagon", "hexagon", "solid", (120, 50, 170), (0, 0, 0)),
)

# Sampling probabilities of small, medium and large objects. Occlusion moves some objects to a
# smaller bucket, so large is drawn more often than COCO's 24 % to end near 41/34/24 % visible.
SIZE_BUCKET_PROBABILITIES = (0.37, 0.33, 0.30)
CROWD_SCENE_PROBABILITY = 0.25
MAX_OBJECTS = 20
MIN_VISIBLE_FRACTION = 0.5
MIN_VISIBLE_FRACTION_CROWD = 0.4
PLACEMENT_TRIES = 12


@dataclass(frozen=True)
class SynthSpec:
    """What to generate: ``images`` square images of ``size`` pixels from ``seed``."""

    images: int
    size: int = 256
    seed: int = 0


def category_table() -> list[dict]:
    """COCO ``categories`` entries (ids 1..10)."""
    return [{"id": i + 1, "name": name, "supercategory": shape} for i, (name, shape, *_rest) in enumerate(CATEGORIES)]


# ----------------------------------------------------------------------------- shapes
def _polygon(shape: str, cx: float, cy: float, r: float, angle: float, aspect: float) -> list[tuple[float, float]]:
    """Vertices of a shape of circumradius ``r`` (x stretched by ``aspect``) rotated by ``angle``."""
    if shape == "square":
        base = [(math.cos(a), math.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]
    elif shape == "diamond":
        base = [(0.6 * math.cos(a), math.sin(a)) for a in np.arange(4) * np.pi / 2]
    elif shape == "triangle":
        base = [(math.cos(a), math.sin(a)) for a in -np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
    elif shape == "hexagon":
        base = [(math.cos(a), math.sin(a)) for a in np.arange(6) * np.pi / 3]
    elif shape == "star":
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        base = [(rr * math.cos(a), rr * math.sin(a)) for rr, a in zip(radii, -np.pi / 2 + np.arange(10) * np.pi / 5)]
    elif shape == "cross":
        t = 0.33
        base = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
    else:
        raise ValueError(f"unknown polygon shape {shape!r}")
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * aspect * cos - y * sin), cy + r * (x * aspect * sin + y * cos)) for x, y in base]


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float, aspect: float) -> np.ndarray:
    """Boolean [size, size] mask of one shape."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - r * aspect, cy - r, cx + r * aspect, cy + r], fill=255)
    elif shape == "ring":
        draw.ellipse([cx - r * aspect, cy - r, cx + r * aspect, cy + r], fill=255)
        inner = 0.55 * r
        draw.ellipse([cx - inner * aspect, cy - inner, cx + inner * aspect, cy + inner], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, angle, aspect), fill=255)
    return np.asarray(canvas) > 127


def _fill_fraction(shape: str) -> float:
    """Area of a shape of circumradius 1 divided by 4 (its circumscribed square), measured once."""
    mask = _shape_mask(shape, 400, 200, 200, 180, 0.0, 1.0)
    return float(mask.sum()) / (360.0 * 360.0)


FILL_FRACTION = {shape: _fill_fraction(shape) for shape in sorted({c[1] for c in CATEGORIES})}


# ----------------------------------------------------------------------------- textures
def _jitter_colour(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 25) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32) + rng.normal(0, amount, 3), 0, 255)


def _texture(rng: np.random.Generator, kind: str, primary: np.ndarray, secondary: np.ndarray, size: int, scale: float) -> np.ndarray:
    """[size, size, 3] float32 fill for an object whose circumradius is ``scale`` pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "solid":
        pattern = np.zeros((size, size), dtype=bool)
    else:
        period = max(2.0, scale / rng.uniform(1.5, 2.5))
        theta = rng.uniform(0, np.pi)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        v = -xx * math.sin(theta) + yy * math.cos(theta)
        if kind == "stripes":
            pattern = (np.floor(u / period) % 2) == 0
        elif kind == "checker":
            pattern = ((np.floor(u / period) + np.floor(v / period)) % 2) == 0
        elif kind == "dots":
            fu, fv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
            pattern = fu * fu + fv * fv < 0.09
        else:
            raise ValueError(f"unknown texture {kind!r}")
    fill = np.where(pattern[..., None], secondary, primary).astype(np.float32)
    # A soft directional shading keeps flat colours from being trivially separable.
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (xx * math.cos(theta) + yy * math.sin(theta)) / size
    return fill * (0.85 + 0.3 * (ramp - ramp.min()))[..., None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured, cluttered background: smooth colour field + noise + unannotated marks."""
    grid = rng.uniform(40, 215, (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float32)
    grey = field.mean(axis=2, keepdims=True)
    field = 0.5 * field + 0.5 * grey  # muted, so objects are not the only saturated colours
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    n_marks = int(rng.integers(8, 30))
    for _ in range(n_marks):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        x0, y0 = rng.uniform(0, size, 2)
        length = rng.uniform(0.05, 0.5) * size
        if kind == 0:  # straight line
            a = rng.uniform(0, 2 * np.pi)
            draw.line([x0, y0, x0 + length * math.cos(a), y0 + length * math.sin(a)], fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 1:  # arc
            box = [x0, y0, x0 + length, y0 + length * rng.uniform(0.3, 1.0)]
            start = rng.uniform(0, 360)
            draw.arc(box, start, start + rng.uniform(40, 200), fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 2:  # scribble
            pts = np.cumsum(rng.normal(0, length / 6, (6, 2)), axis=0) + (x0, y0)
            draw.line([tuple(p) for p in pts], fill=colour, width=int(rng.integers(1, 3)))
        else:  # irregular muted blob
            k = int(rng.integers(5, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            radii = rng.uniform(0.3, 1.0, k) * length / 3
            muted = tuple(int(0.5 * c + 0.5 * 128) for c in colour)
            draw.polygon([(x0 + r * math.cos(a), y0 + r * math.sin(a)) for r, a in zip(radii, angles)], fill=muted)
    image = image.filter(ImageFilter.GaussianBlur(radius=0.6))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 7, (size, size, 3))
    return noisy


# ----------------------------------------------------------------------------- scenes
def _sample_sqrt_area(rng: np.random.Generator, size: int, bucket: int) -> float:
    """Target visible sqrt(area) in pixels for a small (0), medium (1) or large (2) object."""
    ranges = scaled_area_ranges(size)
    small_max, medium_max = math.sqrt(ranges["small"][1]), math.sqrt(ranges["medium"][1])
    bounds = [(max(4.0, 0.3 * small_max), small_max), (small_max, medium_max), (medium_max, 0.6 * size)]
    low, high = bounds[bucket]
    return float(np.exp(rng.uniform(np.log(low), np.log(max(high, low + 1e-3)))))


def _object_count(rng: np.random.Generator) -> int:
    return int(min(MAX_OBJECTS, rng.geometric(1 / 6.0)))


def _plan_objects(rng: np.random.Generator, size: int) -> tuple[list[dict], bool]:
    """Category, size and position of each object to draw (largest first), and whether crowded."""
    crowded = rng.random() < CROWD_SCENE_PROBABILITY
    plans = []
    if crowded:
        category = int(rng.integers(len(CATEGORIES)))
        bucket = int(rng.choice(2, p=(0.6, 0.4)))  # crowds of small or medium objects
        sqrt_area = _sample_sqrt_area(rng, size, bucket)
        centre = rng.uniform(0.25 * size, 0.75 * size, 2)
        for _ in range(int(rng.integers(4, 13))):
            jitter = rng.normal(0, 1.1 * sqrt_area, 2)
            plans.append(dict(category=category, sqrt_area=sqrt_area * rng.uniform(0.8, 1.25), centre=centre + jitter, crowd=True))
        n_other = int(rng.integers(0, 7))
    else:
        n_other = _object_count(rng)
    for _ in range(min(n_other, MAX_OBJECTS - len(plans))):
        bucket = int(rng.choice(3, p=SIZE_BUCKET_PROBABILITIES))
        plans.append(dict(category=int(rng.integers(len(CATEGORIES))), sqrt_area=_sample_sqrt_area(rng, size, bucket), centre=None, crowd=False))
    plans.sort(key=lambda p: -p["sqrt_area"])
    return plans, crowded


def render_image(seed: int, index: int, size: int) -> tuple[np.ndarray, list[dict]]:
    """Draw image ``index`` of a split.

    Returns:
        image: [size, size, 3] uint8 RGB.
        objects: dicts with ``category_id`` (1-based), ``bbox`` [x, y, w, h] in pixels (COCO
        format, of the visible pixels) and ``area`` (visible pixel count).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    canvas = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int32)  # which object each pixel shows
    drawn_area: list[int] = []
    categories: list[int] = []
    plans, _ = _plan_objects(rng, size)
    for plan in plans:
        name, shape, texture, primary, secondary = CATEGORIES[plan["category"]]
        area = plan["sqrt_area"] ** 2
        for _try in range(PLACEMENT_TRIES):
            aspect = float(rng.uniform(0.75, 1.33)) if shape in ("circle", "ring") else 1.0
            r = math.sqrt(area / (4 * FILL_FRACTION[shape] * aspect))
            if plan["centre"] is not None and _try < PLACEMENT_TRIES // 2:
                cx, cy = plan["centre"] + rng.normal(0, 0.3 * r, 2)
            else:
                cx, cy = rng.uniform(0, size, 2)
            mask = _shape_mask(shape, size, float(cx), float(cy), r, float(rng.uniform(0, 2 * np.pi)), aspect)
            if mask.sum() < 0.6 * area:  # mostly outside the image; try elsewhere
                continue
            min_visible = MIN_VISIBLE_FRACTION_CROWD if plan["crowd"] else MIN_VISIBLE_FRACTION
            covered = np.bincount(owner[mask & (owner >= 0)], minlength=len(drawn_area))
            still_visible = np.bincount(owner[owner >= 0], minlength=len(drawn_area)) - covered
            if np.all(still_visible >= min_visible * np.asarray(drawn_area, dtype=np.float64)):
                break
        else:
            continue  # no placement keeps every earlier object visible enough: skip this one
        fill = _texture(rng, texture, _jitter_colour(rng, primary), _jitter_colour(rng, secondary, 15), size, r)
        canvas[mask] = fill[mask] + rng.normal(0, 5, (int(mask.sum()), 3))
        owner[mask] = len(drawn_area)
        drawn_area.append(int(mask.sum()))
        categories.append(plan["category"] + 1)

    objects = []
    for k, category_id in enumerate(categories):
        ys, xs = np.nonzero(owner == k)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        objects.append({"category_id": category_id, "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "area": float(len(xs))})
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, objects


def _render_and_save(job: tuple[int, int, int, str]) -> list[dict]:
    seed, index, size, path = job
    image, objects = render_image(seed, index, size)
    Image.fromarray(image).save(path, format="PNG", compress_level=6)
    return objects


def generate_split(out_dir: str | os.PathLike, split: str, spec: SynthSpec, workers: int | None = None, progress: bool = True) -> Path:
    """Write ``out_dir/images/<split>_NNNNNN.png`` and ``out_dir/annotations/instances_<split>.json``.

    Returns the annotation file's path. Identical bytes for identical (split sizes, seed, size).
    """
    if spec.images < 1 or spec.size < 32:
        raise ValueError(f"need at least 1 image of at least 32 px, got images={spec.images}, size={spec.size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    file_names = [f"{split}_{i:06d}.png" for i in range(spec.images)]
    jobs = [(spec.seed, i, spec.size, str(out / "images" / name)) for i, name in enumerate(file_names)]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=f"synth {split}", unit="img", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            per_image = []
            for objects in pool.map(_render_and_save, jobs, chunksize=8):
                per_image.append(objects)
                bar.update()
    else:
        per_image = []
        for job in jobs:
            per_image.append(_render_and_save(job))
            bar.update()
    bar.close()

    images, annotations = [], []
    for i, (name, objects) in enumerate(zip(file_names, per_image)):
        images.append({"id": i + 1, "file_name": name, "width": spec.size, "height": spec.size})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": 0, **obj})
    dataset = {
        "info": {"description": "assignlab synth-shapes", "split": split, "seed": spec.seed, "image_size": spec.size},
        "images": images,
        "annotations": annotations,
        "categories": category_table(),
    }
    ann_path = out / "annotations" / f"instances_{split}.json"
    tmp = ann_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dataset))
    tmp.replace(ann_path)
    return ann_path


def summarize(ann_path: str | os.PathLike) -> dict:
    """Counts and the small/medium/large proportions of a generated split."""
    dataset = json.loads(Path(ann_path).read_text())
    size = int(dataset["info"]["image_size"])
    areas = np.array([a["area"] for a in dataset["annotations"]], dtype=np.float64)
    per_image = np.bincount([a["image_id"] for a in dataset["annotations"]], minlength=len(dataset["images"]) + 1)[1:]
    return {
        "images": len(dataset["images"]),
        "objects": int(len(areas)),
        "objects_per_image_mean": float(per_image.mean()),
        "objects_per_image_max": int(per_image.max()),
        "size_proportions": size_proportions(areas, size),
    }
