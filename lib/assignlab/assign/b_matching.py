"""B-matching (DETA Table 6): each object matched to exactly B predictions by Hungarian matching
on the cost matrix with the objects repeated B times; separate B for the first stage (encoder
proposals) and the second stage (every decoder layer, the last included; NMS at inference)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from assignlab.assign.base import AssignmentPlan
from assignlab.assign.hungarian import HungarianAssigner, match_cost_from_config

if TYPE_CHECKING:
    from assignlab.config import AssignConfig, LossConfig


def b_matching_plan(assign: "AssignConfig", loss: "LossConfig") -> AssignmentPlan:
    cost = match_cost_from_config(assign)
    decoder = HungarianAssigner(cost, copies=assign.second_stage_b)
    return AssignmentPlan(encoder=HungarianAssigner(cost, copies=assign.first_stage_b), auxiliary=decoder, last=decoder)
