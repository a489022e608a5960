"""Released DETA checkpoints: read them, map their keys onto our detector, write our checkpoint."""
