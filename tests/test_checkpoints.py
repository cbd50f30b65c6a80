"""Checkpoints that survive faults: atomic writes, a run folder's fallback to its newest loadable periodic
checkpoint (a named file is that file), resume with the stored config, SIGINT/SIGTERM save a final checkpoint
and say how to resume."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sdegen.errors import UserError
from sdegen.runtime.checkpoints import atomic_save, candidates, find_checkpoint

SDEGEN = [sys.executable, "-m", "sdegen"]


def fake(step):
    return {
        "state_dict": {"w": torch.full((3,), float(step))},
        "global_step": step,
        "sdegen": {"cfg": {}, "data": {}, "kind": "score"},
    }


class Unpicklable:
    def __reduce__(self):
        raise OSError(28, "No space left on device")  # what a full disk looks like mid-write


def test_atomic_save_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save(fake(3), path)
    with pytest.raises(OSError, match="No space left") as err:
        atomic_save({"x": Unpicklable()}, path)
    assert err.value.filename == str(path)  # the one-line error names the file
    assert torch.load(path, weights_only=True)["global_step"] == 3  # intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_find_checkpoint_falls_back_to_the_newest_loadable_one(tmp_path, capsys):
    folder = tmp_path / "run" / "checkpoints"
    for step in (3, 6, 9):
        atomic_save(fake(step), folder / f"step_{step:07d}.ckpt")
    atomic_save(fake(9), folder / "last.ckpt")
    (folder / "last.ckpt").write_bytes((folder / "last.ckpt").read_bytes()[:100])  # truncated (SIGKILL on tmpfs)
    (folder / "step_0000009.ckpt").write_bytes(b"")  # and an empty step checkpoint (full disk)
    assert [p.name for p in candidates(tmp_path / "run")] == [
        "last.ckpt",
        "step_0000009.ckpt",
        "step_0000006.ckpt",
        "step_0000003.ckpt",
    ]
    path, checkpoint = find_checkpoint(tmp_path / "run")
    assert path.name == "step_0000006.ckpt" and checkpoint["global_step"] == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sdegen: warning:") and "using step_0000006.ckpt (step 6)" in err[0]
    # a file given explicitly is that file: unreadable is one UserError, never a sibling
    with pytest.raises(UserError, match=r"last\.ckpt is not a readable checkpoint"):
        find_checkpoint(folder / "last.ckpt")
    # the fallback of a run folder stays among the run's own periodic checkpoints (step_*.ckpt)
    atomic_save(fake(99), folder / "other.ckpt")
    assert "other.ckpt" not in [p.name for p in candidates(tmp_path / "run")]
    assert find_checkpoint(tmp_path / "run")[0].name == "step_0000006.ckpt"
    # nothing loadable is one UserError
    for p in folder.iterdir():
        p.write_bytes(b"junk")
    with pytest.raises(UserError, match="none of the 4 checkpoints"):
        find_checkpoint(tmp_path / "run")


def run_train(args, cwd, timeout=300):
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([*SDEGEN, "train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_truncated_last_ckpt_resume_falls_back_and_uses_the_stored_config(tiny_run_copy, tmp_path):
    run = tiny_run_copy  # tests/conftest.py: debug=fast, 6 steps, checkpoints at steps 3 and 6
    stored = torch.load(run / "checkpoints" / "step_0000006.ckpt", weights_only=True)["sdegen"]["cfg"]
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    resumed = tmp_path / "resumed"
    # resume=RUN alone: the stored config (debug=fast's tiny model and data limit) -- only the step limit changes
    proc = run_train(
        [
            f"resume={run}",
            "trainer.max_steps=8",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={resumed}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "last.ckpt is unreadable; using step_0000006.ckpt (step 6)" in warnings[0]
    after = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["global_step"] == 8 and after["sdegen"]["cfg"]["model"]["channels"] == stored["model"]["channels"]
    assert stored["model"]["channels"] == [8, 16]  # debug=fast's model, not the default recipe's
    assert after["sdegen"]["cfg"]["data"]["limit"] == stored["data"]["limit"] == 64


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_final_checkpoint_and_says_how_to_resume(tmp_path, sig):
    run = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    args = [
        *SDEGEN,
        "train",
        "debug=fast",
        "logger=csv",
        "data.limit=32",
        "trainer.enable_progress_bar=false",
        "trainer.max_steps=100000",
        "checkpoint.every_n_steps=1000",
        "sample_grid.every_n_steps=0",
        "sample_grid.at_end=false",
        "val_every=1000",
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "csv" / "metrics.csv").is_file() or (run / "csv" / "metrics.csv").stat().st_size < 200:
        assert proc.poll() is None and time.time() < deadline, "training did not start"
        time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # the final checkpoint
    assert last["global_step"] >= 1
    assert f"resume with: sdegen train resume={run}" in out
    assert "Traceback" not in err and "KeyboardInterrupt" not in out + err
