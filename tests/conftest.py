import os
from pathlib import Path

import pytest
import torch

# One intra-op thread: the suite's tensors are small, where extra threads only add synchronisation
# (several times slower on a busy 2-core machine).  Subprocesses (CLI tests) inherit OMP_NUM_THREADS.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (see shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _restore_logging():
    """Tests that run ``sdegen.cli.main`` in-process let Hydra configure the root logger with handlers that
    write to that test's captured stderr; restore the handlers so later tests never log to a closed stream."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
