"""Assignment of predictions to objects: one file per method, one registry line per method.

Every assigner returns one :class:`AssignResult` per image. A *method* (``AssignConfig.method``)
is a plan saying which assigner serves the encoder proposals, the auxiliary decoder layers and the
last decoder layer; :data:`~assignlab.assign.base.METHODS` lists them.
"""
from assignlab.assign.base import METHODS, AssignmentPlan, Assigner, AssignResult, build_plan

__all__ = ["METHODS", "AssignmentPlan", "Assigner", "AssignResult", "build_plan"]
