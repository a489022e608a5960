"""assignlab: a reproducibility study of DETA (IoU assignment + NMS) and Align-DETR (IA-BCE,
mixed matching) on one two-stage Deformable-DETR whose training objective is a config switch."""

__version__ = "0.1.0"
