"""Inputs that cannot hurt: a checkpoint's stored config is data (a `_target_` outside sdegen's registry fails in
one line before anything is called), a run folder belongs to one run (lock, finished runs refused), an explicit
checkpoint file is that file, inpainting works with the class-conditional default model, and offline image data
says how to point at a local copy."""

import copy
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sdegen import cli
from sdegen.commands.train import main as train_main
from sdegen.commands.train import nonfinite_message
from sdegen.errors import UserError
from sdegen.runtime import registry
from sdegen.runtime.checkpoints import find_checkpoint, load_classifier, load_score_model
from sdegen.runtime.rundir import LOCK, RunLock, check_free

REPO = Path(__file__).resolve().parents[1]
SDEGEN = [sys.executable, "-m", "sdegen"]
LOCATIONS = ("sde.schedule", "model", "sde", "data", "sample_grid.sampler")


def config(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "debug=fast",
                "logger=csv",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                "sample_grid.every_n_steps=0",
                "sample_grid.at_end=false",
                *overrides,
            ],
        )


@pytest.fixture
def run(tiny_run):
    """The session's tiny run of the default recipe (class-conditional ScoreNet on MNIST digits): 6 steps,
    read-only files (tests/conftest.py)."""
    return tiny_run


def payloads(tmp):
    """(name, stored-config node, check that it had no effect) for each crafted `_target_`."""
    victim, keep = tmp / "victim.txt", tmp / "keep"
    keep.mkdir(exist_ok=True)
    (keep / "file").write_text("x")
    no_victim = lambda: not victim.exists()  # noqa: E731 - a one-line check
    return [
        ("builtins.open", {"_target_": "builtins.open", "file": str(victim), "mode": "w"}, no_victim),
        ("shutil.rmtree", {"_target_": "shutil.rmtree", "path": str(keep)}, lambda: (keep / "file").is_file()),
        ("os.system", {"_target_": "os.system", "command": f"touch {victim}"}, no_victim),
        ("subprocess.run", {"_target_": "subprocess.run", "args": ["touch", str(victim)]}, no_victim),
        (
            "importlib.import_module",
            {"_target_": "importlib.import_module", "name": "this"},
            lambda: "this" not in sys.modules,
        ),
    ]


def craft(run, path, location, node, kind="score"):
    """The run's checkpoint with ``node`` placed at ``location`` of its stored config, saved as `sdegen train` does."""
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint = copy.deepcopy(checkpoint)
    cfg = checkpoint["sdegen"]["cfg"]
    *parents, last = location.split(".")
    for key in parents:
        cfg = cfg[key]
    cfg[last] = node
    checkpoint["sdegen"]["kind"] = kind
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def run_cli(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        cli.main(["sdegen", *args])
    captured = capsys.readouterr()
    return err.value.code, [line for line in captured.err.splitlines() if line.strip()]


def one_line(code, lines, *needles):
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("sdegen: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- the registry -----------------------------------------------------------------------------------------
def test_registry_holds_exactly_the_targets_of_the_configs():
    import yaml

    found = set()
    for path in (REPO / "configs").rglob("*.yaml"):
        text = yaml.safe_load(path.read_text())
        stack = [text]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                found |= {v for k, v in node.items() if k == "_target_"}
                stack += list(node.values())
            elif isinstance(node, list):
                stack += node
    assert set(registry.targets()) == found and "sdegen.sde.VPSDE" in found
    assert registry.get("sdegen.sde.VPSDE").__name__ == "VPSDE"
    with pytest.raises(UserError, match=r"^model\._target_='os\.system' is not an object sdegen builds"):
        registry.build({"_target_": "os.system", "command": "true"}, "model")
    # nested anywhere, also in lists: checked before anything is imported
    with pytest.raises(UserError, match=r"^x\.a\[1\]\.b\._target_='builtins\.exec'"):
        registry.check({"a": [1, {"b": {"_target_": "builtins.exec"}}]}, "x")


def test_loggers_are_built_only_from_the_registry(tmp_path):
    """``logger.<name>`` of any command is built through the registry: an unknown target is one line and runs
    nothing; the configs' own loggers build."""
    from omegaconf import OmegaConf

    from sdegen.runtime.loggers import build_loggers

    victim = tmp_path / "victim.txt"
    crafted = {"logger": {"x": {"_target_": "subprocess.run", "args": ["touch", str(victim)]}}}
    with pytest.raises(UserError, match=r"^logger\.x\._target_='subprocess\.run' is not an object sdegen builds"):
        build_loggers(OmegaConf.create(crafted), tmp_path)
    assert not victim.exists()
    csv = OmegaConf.load(REPO / "configs" / "logger" / "csv.yaml")
    (logger,) = build_loggers(OmegaConf.create({"logger": csv}), tmp_path)
    assert type(logger).__name__ == "CSVLogger" and Path(logger.save_dir) == tmp_path


# --- crafted checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("location", LOCATIONS)
def test_crafted_stored_config_is_refused_on_load(run, tmp_path, location):
    for name, node, harmless in payloads(tmp_path):
        bad = craft(run, tmp_path / f"{name}.ckpt", location, node)
        with pytest.raises(UserError) as err:
            load_score_model(bad)
        message = str(err.value)
        assert "\n" not in message and f"{location}._target_='{name}'" in message and str(bad) in message
        assert harmless(), f"{name} at {location} had an effect"


def test_crafted_classifier_checkpoint_is_refused(run, tmp_path):
    for name, node, harmless in payloads(tmp_path):
        bad = craft(run, tmp_path / f"{name}.ckpt", "sde", node, kind="classifier")
        with pytest.raises(UserError, match=f"sde._target_='{name}'"):
            load_classifier(bad)
        assert harmless()


@pytest.mark.parametrize("index", range(5))
def test_sample_ckpt_with_a_crafted_config_fails_in_one_line(run, tmp_path, capsys, monkeypatch, index):
    monkeypatch.chdir(tmp_path)
    name, node, harmless = payloads(tmp_path)[index]
    location = LOCATIONS[index]
    bad = craft(run, tmp_path / "shared" / "model.ckpt", location, node)
    out = tmp_path / "out"
    code, lines = run_cli(["sample", f"ckpt={bad}", "n_samples=2", f"hydra.run.dir={out}"], capsys)
    one_line(code, lines, f"{location}._target_='{name}'", "is not an object sdegen builds")
    assert harmless() and not out.exists()


def test_resume_and_classifier_ckpt_with_a_crafted_config_fail_in_one_line(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (name, node, harmless), *_ = payloads(tmp_path)
    craft(run, tmp_path / "bad" / "checkpoints" / "last.ckpt", "sde.schedule", node)
    code, lines = run_cli(
        ["train", f"resume={tmp_path / 'bad'}", "trainer.max_steps=9", f"hydra.run.dir={tmp_path / 'out'}"], capsys
    )
    one_line(code, lines, f"sde.schedule._target_='{name}'")
    assert harmless() and not (tmp_path / "out").exists()

    classifier = craft(run, tmp_path / "cls.ckpt", "model", node, kind="classifier")
    code, lines = run_cli(
        [
            "sample",
            f"ckpt={run}",
            "guidance=classifier",
            f"guidance.classifier_ckpt={classifier}",
            "n_samples=2",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        capsys,
    )
    one_line(code, lines, f"model._target_='{name}'")
    assert harmless() and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sample", "train"])
def test_crafted_checkpoint_through_the_command_line(run, tmp_path, command):
    victim = tmp_path / "victim.txt"
    bad = craft(
        run,
        tmp_path / "bad" / "checkpoints" / "last.ckpt",
        "model",
        {"_target_": "subprocess.run", "args": ["touch", str(victim)]},
    )
    arg = f"ckpt={bad}" if command == "sample" else f"resume={bad.parents[1]}"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [*SDEGEN, command, arg, f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "model._target_='subprocess.run' is not an object sdegen builds" in lines[0]
    assert not victim.exists() and not (tmp_path / "out").exists()


# --- an explicit file is that file ------------------------------------------------------------------------
def test_an_unreadable_named_file_is_an_error_not_a_sibling(run, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "other.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    (folder / "mine.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"mine\.ckpt is not a readable checkpoint"):
        find_checkpoint(folder / "mine.ckpt")
    # a folder without last.ckpt or step_*.ckpt: the files in it are named, none is picked
    with pytest.raises(UserError, match=r"no last\.ckpt or step_\*\.ckpt in .*mine; name the file itself"):
        find_checkpoint(folder)
    monkeypatch.chdir(tmp_path)
    code, lines = run_cli(
        ["sample", f"ckpt={folder / 'mine.ckpt'}", "n_samples=2", f"hydra.run.dir={tmp_path / 'out'}"], capsys
    )
    one_line(code, lines, "mine.ckpt is not a readable checkpoint")


# --- a run folder belongs to one run ----------------------------------------------------------------------
def test_lock_is_exclusive_stale_locks_are_taken_over_and_released(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK).write_text(f"{sleeper.pid} {socket.gethostname()} train\n")
        with pytest.raises(UserError, match=rf"is in use by `sdegen train` \(PID {sleeper.pid} on"):
            RunLock(tmp_path, "sample").acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunLock(tmp_path, "train"):  # the sleeper is gone: its lock is stale and taken over
        assert (tmp_path / LOCK).read_text().split()[0] == str(os.getpid())
        # a DDP rank (a child of the holder, or LOCAL_RANK != 0) passes
        code = "import sys; from sdegen.runtime.rundir import RunLock; RunLock(sys.argv[1], 'train').acquire()"
        child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert child.returncode == 0, child.stderr
        other = subprocess.run(["sh", "-c", f'{sys.executable} -c "{code}" {tmp_path}'], capture_output=True, text=True)
        assert other.returncode != 0 and "is in use by `sdegen train`" in other.stderr
        ranked = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            env=dict(os.environ, LOCAL_RANK="1"),
        )
        assert ranked.returncode == 0, ranked.stderr
    assert not (tmp_path / LOCK).exists()


def test_a_locked_or_finished_run_folder_refuses_a_new_train(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config_text = (run / "config.yaml").read_text()
    checkpoints = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    code, lines = run_cli(["train", "debug=fast", f"hydra.run.dir={run}"], capsys)
    one_line(code, lines, f"{run} already holds a run", f"resume={run}")
    assert (run / "config.yaml").read_text() == config_text
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == checkpoints
    busy = tmp_path / "busy"
    busy.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another live command
    try:
        (busy / LOCK).write_text(f"{sleeper.pid} {socket.gethostname()} train\n")
        code, lines = run_cli(["train", "debug=fast", f"hydra.run.dir={busy}"], capsys)
    finally:
        sleeper.kill()
        sleeper.wait()
    one_line(code, lines, f"{busy} is in use by `sdegen train` (PID {sleeper.pid}")
    assert not (busy / "config.yaml").exists() and not (busy / "checkpoints").exists()
    # the same checks without keeping the lock (before Hydra writes into a given hydra.run.dir)
    with pytest.raises(UserError, match="already holds a run"):
        check_free(run, "train")
    check_free(run, "sample")  # other commands may write beside a finished run (e.g. RUN/eval)
    check_free(run, "train", resume=run / "checkpoints" / "last.ckpt")
    check_free(tmp_path / "nowhere", "train")
    assert not (tmp_path / "nowhere").exists() and not (run / LOCK).exists()
    # resume= naming the run passes the folder check (here: nothing left to train, so it stops there)
    with pytest.raises(UserError, match=r"trainer\.max_steps=6 leaves nothing to train: .* is at step 6"):
        train_main(config(f"resume={run}"), run_dir=run)
    assert not (run / LOCK).exists()


def test_resume_without_steps_left_fails_in_one_line_and_leaves_no_folder(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for max_steps in (6, 3):
        out = tmp_path / f"resumed{max_steps}"
        code, lines = run_cli(
            ["train", f"resume={run}", f"trainer.max_steps={max_steps}", f"hydra.run.dir={out}"], capsys
        )
        one_line(
            code,
            lines,
            f"trainer.max_steps={max_steps} leaves nothing to train",
            "step 6",
            "give trainer.max_steps > 6",
        )
        assert not out.exists()


def test_nonfinite_message_names_what_exists(run, tmp_path):
    err = FloatingPointError("sdegen: training stopped: the loss is nan at step 2 (epoch 0, batch 2); old advice")
    empty = nonfinite_message(err, tmp_path)
    assert empty.startswith("training stopped: the loss is nan at step 2 (epoch 0, batch 2); no checkpoint")
    assert "last good" not in empty and "optim.lr" in empty and "loss." in empty and "model.data_std" in empty
    assert f"{run / 'checkpoints' / 'last.ckpt'} (step 6)" in nonfinite_message(err, run)


# --- inpainting with the class-conditional default model --------------------------------------------------
def test_inpaint_with_a_class_conditional_checkpoint(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [f"ckpt={run}", "task=inpaint", "n_samples=4", "sampler.steps=3", "progress=false"]
    outs = {}
    for name, extra in {"random": [], "again": [], "label": ["guidance=cfg", "guidance.label=3"]}.items():
        outs[name] = tmp_path / name
        cli.main(["sdegen", "sample", *common, *extra, f"hydra.run.dir={outs[name]}"])  # exit 2 would raise
    f = {k: np.load(v / "samples.npz") for k, v in outs.items()}
    known = f["random"]["masks"].astype(bool).repeat(f["random"]["samples"].shape[1], axis=1)
    np.testing.assert_allclose(f["random"]["samples"][known], f["random"]["originals"][known], atol=1e-5)
    np.testing.assert_array_equal(f["random"]["samples"], f["again"]["samples"])  # labels drawn from the seed
    assert not np.allclose(f["random"]["samples"][~known], f["label"]["samples"][~known])


@pytest.mark.slow
def test_colorize_with_a_class_conditional_checkpoint(tmp_path, monkeypatch):
    """A class-conditional model of 8×8 RGB images with 3 classes: colorization keeps the grey level exactly
    (where no channel was clipped to [0, 1] on the way to data space)."""
    from sdegen.tasks.colorize import decouple

    images = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=images, labels=np.arange(24) % 3)
    train_main(
        config("data=npz", f"data.train_file={tmp_path / 'rgb.npz'}", "data.batch_size=4"), run_dir=tmp_path / "rgb"
    )
    assert (
        torch.load(tmp_path / "rgb" / "checkpoints" / "last.ckpt", weights_only=True)["sdegen"]["data"]["num_classes"]
        == 3
    )
    monkeypatch.chdir(tmp_path)
    cli.main(
        [
            "sdegen",
            "sample",
            f"ckpt={tmp_path / 'rgb'}",
            "task=colorize",
            "n_samples=2",
            "sampler.steps=3",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'out'}",
        ]
    )
    f = np.load(tmp_path / "out" / "samples.npz")
    grey = lambda x: decouple(torch.as_tensor(x))[:, 0]  # noqa: E731 - the observed coordinate
    inside = torch.as_tensor(((f["samples"] > 0) & (f["samples"] < 1)).all(1))  # images are clipped to [0, 1]
    assert inside.float().mean() > 0.5
    torch.testing.assert_close(grey(f["samples"])[inside], grey(f["originals"])[inside], atol=1e-5, rtol=0)


def test_inpaint_draws_labels_per_batch_for_a_guided_score():
    from sdegen.guidance.labels import LabelSource
    from sdegen.sde import VPSDE, LinearSchedule
    from sdegen.tasks.inpaint import impute

    seen = []

    class Conditional:
        def __init__(self):
            self.labels = LabelSource("random", num_classes=10)

        def start_batch(self, batch_size, generator=None, device=None):
            return self.labels.start_batch(batch_size, generator=generator, device=device)

        def __call__(self, x, t):
            y = self.labels.for_batch(x.shape[0], x.device)  # raises unless start_batch ran
            seen.append(y.clone())
            return -x

    x = torch.zeros(6, 1, 2, 2)
    mask = torch.zeros(6, 1, 2, 2)
    mask[:, :, 0] = 1
    impute(
        Conditional(),
        VPSDE(LinearSchedule()),
        {"_target_": "sdegen.samplers.em.sample_em", "steps": 3},
        x,
        mask,
        generator=torch.Generator().manual_seed(0),
    )
    expected = torch.randint(10, (6,), generator=torch.Generator().manual_seed(0))  # the first draw of the seed
    assert seen and all(torch.equal(y, expected) for y in seen)


# --- offline image data -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_offline_data_fails_in_one_line_with_the_local_copy_hint(tmp_path, capsys, monkeypatch, name):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "empty"
    root.mkdir()
    code, lines = run_cli(
        ["train", "debug=fast", f"data={name}", f"data.root={root}", f"hydra.run.dir={tmp_path / 'out'}"], capsys
    )
    one_line(
        code,
        lines,
        f"data={name}: no local copy under data.root={root} and the download failed",
        "data.root=PATH data.download=false",
        "../shared/data",
    )
    assert not (tmp_path / "out").exists()


# --- labels of an npz training file -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels, classes, pattern",
    [
        ([0, 1, -1, 2], None, r"labels from -1 to 2; labels must be class indices >= 0"),
        ([0, 1, 3, 2], 3, r"labels from 0 to 3; labels must be class indices 0\.\.2 \(data\.num_classes=3\)"),
        ([0.5, 1, 1, 2], None, r"labels of dtype float64; labels must be integers >= 0"),
    ],
)
def test_npz_labels_must_be_class_indices(tmp_path, labels, classes, pattern):
    from sdegen.data.images import NpzDataModule

    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), dtype=np.uint8), labels=np.asarray(labels))
    with pytest.raises(UserError, match=pattern):
        NpzDataModule(str(tmp_path / "d.npz"), num_classes=classes).setup("fit")
    np.savez(tmp_path / "ok.npz", images=np.zeros((4, 8, 8), dtype=np.uint8), labels=np.asarray([0, 1, 2, 0]))
    assert NpzDataModule(str(tmp_path / "ok.npz")).num_classes == 3
