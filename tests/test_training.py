"""sdegen train end to end: run folder, checkpoints (weights_only, EMA), resume, NaN stop, W&B offline,
multirun, DDP on CPU and a SIGKILL'd run that resumes."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from sdegen.commands.train import main
from sdegen.runtime.checkpoints import find_checkpoint, load_score_model
from sdegen.runtime.config import build_sde
from sdegen.training.module import ScoreModule

REPO = Path(__file__).resolve().parents[1]
SDEGEN = [sys.executable, "-m", "sdegen"]


def config(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "debug=fast",
                "logger=csv",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                *overrides,
            ],
        )


def metrics(run_dir):
    with open(Path(run_dir) / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def trained(tiny_run):
    """The session's tiny run: `config()`'s overrides, debug=fast's 64 digits and 6 steps (tests/conftest.py)."""
    return tiny_run


def test_run_folder_and_checkpoint(trained):
    run_dir = trained
    assert (run_dir / "config.yaml").is_file()
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step_0000003.ckpt", "step_0000006.ckpt"]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    rows = metrics(run_dir)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 6 and all(0 < v < 5 for v in losses)
    assert any(r.get("val/loss") for r in rows) and any(r.get("lr") for r in rows)

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6 and ckpt["sdegen"]["cfg"]["model"]["_target_"].endswith("ScoreNet")
    ema = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    raw = ckpt["current_model_state"]
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # EMA ≠ raw weights
    model, cfg = load_score_model(run_dir)
    assert not model.training and cfg["data_info"]["shape"] == [1, 28, 28]
    assert 0.4 < cfg["data_info"]["data_std"] < 0.65  # recorded for the samplers' focus grid (64 MNIST digits)
    assert torch.equal(model.conv_in.weight, ema["model.conv_in.weight"])
    x = torch.randn(2, 1, 28, 28)
    assert model(x, torch.tensor([0.5, 0.5])).shape == x.shape
    assert find_checkpoint(run_dir)[0] == run_dir / "checkpoints" / "last.ckpt"


def test_resume_continues_step_optimizer_and_ema(trained, tmp_path, caplog):
    run_dir = trained
    with caplog.at_level("INFO", logger="sdegen"):
        summary = main(config("data.limit=64", f"resume={run_dir}", "trainer.max_steps=9"), run_dir=tmp_path)
    assert any(r.getMessage().startswith("trained 3 steps (steps 6-9 of ") for r in caplog.records)
    assert summary["global_step"] == 9 and summary["steps_trained"] == 3
    assert summary["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    steps = [int(r["step"]) for r in metrics(tmp_path) if r.get("train/loss")]
    assert steps == [6, 7, 8]  # no step repeated or skipped
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    after = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)

    def step_of(c):
        return int(next(iter(c["optimizer_states"][0]["state"].values()))["step"])

    assert step_of(before) == 6 and step_of(after) == 9  # Adam's moments continued
    assert int(after["averaging_state"]["n_averaged"]) == 9  # EMA continued
    assert after["lr_schedulers"][0]["last_epoch"] == 9


def test_non_finite_loss_stops_with_step(tmp_path):
    cfg = config("data=gmm", "data.train_size=64", "data.batch_size=16")
    data = __import__("hydra").utils.instantiate(cfg.data)
    module = ScoreModule(cfg, build_sde(cfg), data)
    calls = []

    def loss_fn(model, x, y=None, generator=None):
        calls.append(1)
        value = (model(x, torch.full((x.shape[0],), 0.5)) ** 2).mean() + 1
        return (value * float("nan") if len(calls) == 3 else value), None, None

    module.loss_fn = loss_fn
    trainer = L.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        limit_val_batches=0,
    )
    with pytest.raises(FloatingPointError, match="loss is nan at step 2 "):
        trainer.fit(module, datamodule=data)


def test_non_finite_loss_is_caught_before_a_checkpoint_and_at_the_window_end(tmp_path):
    """The loss is read on the host once per ``log_every_n_steps`` window (no GPU sync per step), but a
    checkpoint is never written after a NaN: the step-4 checkpoint is refused, naming step 2; with
    checkpoints off, the check on the next logging step (step 2 of every 3) stops the run."""
    from sdegen.training.callbacks import StepCheckpoint

    cfg = config("data=gmm", "data.train_size=64", "data.batch_size=8")
    data = __import__("hydra").utils.instantiate(cfg.data)

    def nan_at_call(n):
        calls = []

        def loss_fn(model, x, y=None, generator=None):
            calls.append(1)
            value = (model(x, torch.full((x.shape[0],), 0.5)) ** 2).mean() + 1
            return (value * float("inf") if len(calls) == n else value), None, None

        return loss_fn, calls

    module = ScoreModule(cfg, build_sde(cfg), data)
    module.loss_fn, _ = nan_at_call(3)
    ckpt = StepCheckpoint(tmp_path / "ckpt", every_n_steps=4)
    trainer = L.Trainer(
        max_steps=8,
        logger=False,
        enable_progress_bar=False,
        accelerator="cpu",
        callbacks=[ckpt],
        default_root_dir=tmp_path,
        limit_val_batches=0,
        log_every_n_steps=50,
    )
    with pytest.raises(FloatingPointError, match="loss is inf at step 2 "):
        trainer.fit(module, datamodule=data)
    assert not list((tmp_path / "ckpt").glob("*.ckpt"))

    module = ScoreModule(cfg, build_sde(cfg), data)
    module.loss_fn, calls = nan_at_call(2)
    trainer = L.Trainer(
        max_steps=8,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        limit_val_batches=0,
        log_every_n_steps=3,
    )
    with pytest.raises(FloatingPointError, match="loss is inf at step 1 "):
        trainer.fit(module, datamodule=data)
    assert len(calls) == 3  # steps 0-2 ran: the check on logging step 2 stopped the run


def test_wandb_offline_without_key(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("SDEGEN_WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    with caplog.at_level("INFO", logger="sdegen"):
        main(config("data.limit=32", "logger=default", "trainer.max_steps=3"), run_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("W&B offline: no W&B API key") and "wandb sync" in lines[0]
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    # W&B's service process writes the run file asynchronously: `finish()` can return before the last
    # records are on disk (seen on a loaded machine), so give it a bounded moment
    deadline = time.monotonic() + 30
    while not (b"train/loss" in (blob := runs[0].read_bytes()) and b"val/loss" in blob) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b"train/loss" in blob and b"val/loss" in blob
    assert list((tmp_path / "wandb").glob("offline-run-*/files/media/images/samples_*.png"))


def run_cli(args, timeout=300, **kw):
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    return subprocess.run(
        [*SDEGEN, "train", *args], cwd=kw.pop("cwd"), env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_multirun_skips_meaningless_pairs(tmp_path):
    result = run_cli(
        [
            "-m",
            "sde=ve,vp",
            "schedule=linear,geometric",
            "loss=sigma2",
            "debug=fast",
            "logger=csv",
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "data.limit=16",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the sweeper makes the pairs meaningful before any job starts: VE once with its own geometric σ(t) (ve-linear
    # becomes ve-geometric), vp-geometric left out; the one line says both
    notes = [line for line in result.stdout.splitlines() if line.startswith("[sdegen] sweep of")]
    assert len(notes) == 1 and notes[0].startswith("[sdegen] sweep of 2 job(s): "), result.stdout[-3000:]
    assert "sde=ve runs with its own schedule=geometric" in notes[0] and "left out vp-geometric " in notes[0]
    assert "[sdegen] skipped" not in result.stdout
    lasts = sorted(p.parent.parent.name for p in tmp_path.glob("*/checkpoints/last.ckpt"))
    assert len(lasts) == 2 and any(n.endswith("_ve-geometric") for n in lasts)
    assert any(n.endswith("_vp-linear") for n in lasts)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    result = run_cli(
        [
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "debug=fast",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            "data.limit=16",
            "trainer.max_steps=2",
            "checkpoint.every_n_steps=2",
            "val_every=1000",
            "sample_grid.every_n_steps=0",
            "sample_grid.at_end=false",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    assert "All distributed processes registered" in result.stderr + result.stdout
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert [float(r["train/loss"]) for r in metrics(tmp_path) if r.get("train/loss")]


@pytest.mark.slow
def test_sigkill_then_resume_loses_at_most_one_interval(tmp_path):
    run_dir, every = tmp_path / "killed", 2
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    args = [
        *SDEGEN,
        "train",
        "debug=fast",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "data.limit=16",
        "trainer.max_steps=100000",
        f"checkpoint.every_n_steps={every}",
        "sample_grid.every_n_steps=0",
        "sample_grid.at_end=false",
        "val_every=1000",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    last = run_dir / "checkpoints" / "last.ckpt"

    def step_of(path):
        try:
            return torch.load(path, weights_only=True)["global_step"]
        except FileNotFoundError:  # not written yet (checkpoints are replaced atomically: never a torn read)
            return -1

    while step_of(last) < 2 * every:
        assert proc.poll() is None and time.time() < deadline, f"training did not reach step {2 * every}"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(last, weights_only=True)["global_step"]  # intact after the kill
    newest = max(step_of(p) for p in (run_dir / "checkpoints").glob("step_*.ckpt"))
    assert saved >= 2 * every and saved % every == 0
    assert abs(newest - saved) <= every  # last.ckpt and the newest periodic checkpoint: one interval apart at most
    resumed = tmp_path / "resumed"  # in this process: the killed run is the separate one
    summary = main(config("data.limit=16", f"resume={run_dir}", f"trainer.max_steps={saved + 2}"), run_dir=resumed)
    assert summary["global_step"] == saved + 2 and summary["resumed_from"] == str(last)
    steps = [int(r["step"]) for r in metrics(resumed) if r.get("train/loss")]
    assert steps == [saved, saved + 1]


def test_lr_multiplier_warmup_and_decay_closed_forms():
    """Warm-up ramps linearly to 1; the decay holds 1 until decay_start × total, then falls to 0 at
    total (cosine: ½(1 + cos πp), linear: 1 − p)."""
    from sdegen.training.module import lr_multiplier

    assert lr_multiplier(0, warmup=10) == pytest.approx(0.1)
    assert lr_multiplier(4, warmup=10) == pytest.approx(0.5)
    assert lr_multiplier(500, warmup=10) == 1.0
    kw = dict(warmup=10, decay_start=0.5, total=1000)
    assert lr_multiplier(500, decay="cosine", **kw) == pytest.approx(1.0)
    assert lr_multiplier(750, decay="cosine", **kw) == pytest.approx(0.5)
    assert lr_multiplier(1000, decay="cosine", **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier(600, decay="cosine", **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_multiplier(600, decay="linear", **kw) == pytest.approx(0.8)
    assert lr_multiplier(900, decay="none", **kw) == 1.0
    assert lr_multiplier(3, decay="linear", warmup=10, decay_start=0.0, total=10) == pytest.approx(0.4 * 0.7)
    with pytest.raises(ValueError, match="optim.decay"):
        lr_multiplier(600, decay="exp", **kw)


def test_training_steps_never_read_the_device(tmp_path, monkeypatch):
    """A GPU step must not wait for the host: between logging / checkpoint / validation steps the whole
    `sdegen train` step (loss, NaN watch, power EMA, logging, progress bar) reads no tensor on the host and
    makes no device scalar.  Counted on the CPU by instrumenting Tensor.item/__bool__/__int__/__float__ and
    torch.tensor(..., device=); Adam's own ``step`` reads are excluded (that counter lives on the CPU
    unless ``capturable``).  The previous code read 6 per step (NaN check, lr log, prog-bar loss, power
    EMA's count, AveragedModel's two counter tests)."""
    import traceback

    import sdegen.training.progress as progress

    monkeypatch.setattr(progress.RunProgressBar, "min_interval", 1e9)  # the bar refreshes once, at step 1
    reads, state = [], {"step": None}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            if state["step"] is not None:
                frames = traceback.extract_stack(limit=12)[:-1]
                if not any(f.filename.endswith("torch/optim/optimizer.py") for f in frames):
                    reads.append((state["step"], name, f"{frames[-1].filename}:{frames[-1].lineno}"))
            return fn(*args, **kwargs)

        return wrapper

    for name in ("item", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    real_tensor = torch.tensor
    monkeypatch.setattr(
        torch,
        "tensor",
        lambda *a, **k: (counted("tensor(device=)", real_tensor) if k.get("device") is not None else real_tensor)(
            *a, **k
        ),
    )

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            state["step"] = trainer.global_step if trainer.global_step >= 3 else None

        def on_train_batch_end(self, trainer, *args):
            state["step"] = None

    import sdegen.training.callbacks as callbacks

    build = callbacks.build_callbacks
    monkeypatch.setattr(callbacks, "build_callbacks", lambda cfg, run_dir: [*build(cfg, run_dir), Clock()])
    import sdegen.commands.train as train

    monkeypatch.setattr(train, "build_callbacks", callbacks.build_callbacks, raising=False)
    every = 5
    main(
        config(
            "data=gmm",
            "data.train_size=256",
            "trainer.max_steps=16",
            f"trainer.log_every_n_steps={every}",
            "checkpoint.every_n_steps=100",
            "sample_grid.every_n_steps=0",
            "sample_grid.at_end=false",
            "val_every=100",
            "trainer.enable_progress_bar=true",
        ),
        run_dir=tmp_path,
    )
    quiet = [r for r in reads if (r[0] + 1) % every != 0 and r[0] not in (15,)]  # logging steps 4, 9, 14; last 15
    assert not quiet, quiet[:5]
    assert {r[0] for r in reads} <= {4, 9, 14, 15}
