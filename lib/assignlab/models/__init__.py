"""The detector: backbone, deformable encoder/decoder, two-stage query selection, post-processing."""
from assignlab.models.build import build_model, build_postprocessor
from assignlab.models.detector import TwoStageDeformableDETR
from assignlab.models.postprocess import postprocess

__all__ = ["build_model", "build_postprocessor", "TwoStageDeformableDETR", "postprocess"]
