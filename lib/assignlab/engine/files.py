"""The files of a run folder (see :mod:`assignlab.engine.run`); importable without torch."""

CHECKPOINT_NAME = "checkpoint.pth"  # written after every epoch
LOG_NAME = "log.jsonl"              # one line per logged step and per epoch
RESULT_NAME = "result.json"         # written once at the end
