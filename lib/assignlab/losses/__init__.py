"""Losses of both papers and the criterion composing them.

Classification losses (one file each): sigmoid focal (``focal``), IA-BCE with prime-sample
weighting and the Table B variants (``ia_bce``), QFL (``qfl``), VFL (``vfl``), the IoU-branch loss
(``iou_branch``); box losses in ``boxes``. :class:`assignlab.losses.criterion.Criterion` decides
per output which assignment and which loss apply.
"""
