"""DETA's plan for the DETR base (DETA Section 5.1): bipartite matching on the encoder proposals,
IoU assignment only on the decoder.

With DETR's DC5 features the encoder holds few tokens (900 for a 480x480 image), close to the
number of queries, so the first stage keeps one-to-one Hungarian matching (class-agnostic, the
configured match costs) and only the second stage uses DETA's stage-2 IoU assignment against the
detached proposals fed to the decoder (threshold ``stage2_iou_threshold``, top-K per object),
computed once per step and shared by every decoder layer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from assignlab.assign.base import AssignmentPlan
from assignlab.assign.deta import stage2_assigner
from assignlab.assign.hungarian import HungarianAssigner, match_cost_from_config

if TYPE_CHECKING:
    from assignlab.config import AssignConfig, LossConfig


def deta_decoder_only_plan(assign: "AssignConfig", loss: "LossConfig") -> AssignmentPlan:
    """Hungarian on the encoder proposals; DETA stage 2, shared, on every decoder layer."""
    stage2 = stage2_assigner(assign)
    return AssignmentPlan(encoder=HungarianAssigner(match_cost_from_config(assign)), auxiliary=stage2,
                          last=stage2, decoder_shared=True)
