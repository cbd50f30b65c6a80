import os
import shutil
import stat
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


#: the shared run: `sdegen train debug=fast` (the class-conditional ScoreNet shrunk by configs/debug_model, 64
#: embedded MNIST digits, 6 steps; checkpoints, validation and sample grids at steps 3 and 6), CSV log, on the CPU
TINY_RUN = ["debug=fast", "logger=csv", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny trained run for the whole session (``TINY_RUN``); every test that needs a trained checkpoint
    and does not test training itself reads this one.  Its files are read-only: a test that changes a run
    takes ``tiny_run_copy``."""
    import logging

    from hydra import compose, initialize_config_dir

    from sdegen.commands.train import main as train_main

    folder = tmp_path_factory.mktemp("tiny_run")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=TINY_RUN)
    train_main(cfg, run_dir=folder)
    for handler in set(root.handlers) - set(handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return folder


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path):
    """A writable copy of ``tiny_run`` under the test's own ``tmp_path``."""
    copy = Path(shutil.copytree(tiny_run, tmp_path / "tiny_run"))
    for path in copy.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return copy


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
