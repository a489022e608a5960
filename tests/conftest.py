import os

import pytest
import torch

# Deterministic, quiet and light on a 2-core machine.
torch.set_num_threads(int(os.environ.get("ASSIGNLAB_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def synth_val(tmp_path_factory):
    """A small synthetic split written once per test session: (root, annotation path)."""
    from assignlab.data.synthetic import SynthSpec, generate_split

    root = tmp_path_factory.mktemp("synth")
    ann = generate_split(root, "val", SynthSpec(images=12, size=128, seed=5), workers=1, progress=False)
    return root, ann


@pytest.fixture(autouse=True)
def project_root_in_tmp_path(tmp_path, monkeypatch):
    """Every test's project root (``assignlab.paths``) is its own ``tmp_path``: a relative study
    folder (``results``, ``data/...``) never reaches the checkout's committed results."""
    monkeypatch.setenv("ASSIGNLAB_ROOT", str(tmp_path))
