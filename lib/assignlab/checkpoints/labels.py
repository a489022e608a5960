"""Label indices of imported detectors and the category ids they stand for.

DETA's COCO checkpoints (like DETR's) have 91 logits and use the COCO category id itself as the
label index (index 0 and the 10 ids COCO never used have no category). Our COCO loader numbers
the 80 categories contiguously instead, so an imported model carries an explicit
``label_to_category_id`` list, and evaluation translates its labels through it
(:func:`assignlab.models.postprocess.remap_postprocess`).
"""
from __future__ import annotations

# COCO 2017 detection categories (id -> name).
COCO_CATEGORY_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}
COCO_NUM_LOGITS = 91
LABEL_MAPS = ("auto", "coco", "contiguous")


def coco_label_map() -> tuple[list[int | None], dict[int, str]]:
    """91-logit COCO models: label i is category id i. Returns (label_to_category_id, names by label)."""
    label_to_category_id = [i if i in COCO_CATEGORY_NAMES else None for i in range(COCO_NUM_LOGITS)]
    return label_to_category_id, dict(COCO_CATEGORY_NAMES)


def resolve_label_map(kind: str, num_classes: int) -> tuple[list[int | None] | None, dict[int, str]]:
    """``"coco"``: label = COCO category id (needs 91 logits); ``"contiguous"``: label i is the
    dataset's i-th category (None: the evaluation dataset decides); ``"auto"``: coco for 91 logits."""
    if kind not in LABEL_MAPS:
        raise ValueError(f"--label-map {kind!r}: expected one of {LABEL_MAPS}")
    if kind == "auto":
        kind = "coco" if num_classes == COCO_NUM_LOGITS else "contiguous"
    if kind == "coco":
        if num_classes != COCO_NUM_LOGITS:
            raise ValueError(f"--label-map coco needs a {COCO_NUM_LOGITS}-logit classifier, the checkpoint has {num_classes}")
        return coco_label_map()
    return None, {}
