"""Every user error is ONE line `sdegen: error: ...` on stderr, exit status 2, no traceback and no output
files ; most run in-process through `cli.main`, a few as real subprocesses."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sdegen import cli
from sdegen.runtime.config import build_sde, config_dir, to_plain

SDEGEN = [sys.executable, "-m", "sdegen"]


class Payload:
    """A pickle that creates a file when unpickled (the attack of a crafted Inception .pth)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Bad (and a few good) input files, made once."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(2048))
    (d / "empty.ckpt").write_bytes(b"")
    np.savez(d / "labels.npz", images=np.zeros((10, 8, 8), np.uint8), labels=np.zeros(7, np.int64))
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(
        d / "nan_gmm.npz",
        means=np.full((2, 4), np.nan),
        stds=np.ones((2, 4)),
        weights=np.ones(2),
        shape=np.array([1, 2, 2]),
    )
    (d / "emptyfolder").mkdir()
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": Payload(d / "PWNED")}, d / "payload.pth")
    from sdegen.metrics.judge import DigitJudge

    torch.save(DigitJudge().state_dict(), d / "judge.pt")  # random weights: only its presence matters here
    (d / "sample_run").mkdir()
    np.savez(d / "sample_run" / "samples.npz", x=np.zeros((8, 1, 28, 28), np.float32))
    # a score checkpoint (tiny ScoreNet, untrained) and a classifier checkpoint, in the format of `sdegen train`
    from sdegen.training.classifier import ClassifierModule
    from sdegen.training.module import ScoreModule, data_info

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["debug=fast", "data.limit=16", "model.conditional=false"])
        clf_cfg = compose("train", overrides=["debug=fast", "task=classifier", "data=gmm"])
    import hydra.utils

    for name, c, cls, kind in (("score", cfg, ScoreModule, "score"), ("clf", clf_cfg, ClassifierModule, "classifier")):
        data = hydra.utils.instantiate(c.data)
        module = cls(c, build_sde(c), data)
        (d / name / "checkpoints").mkdir(parents=True)
        torch.save(
            {
                "state_dict": module.state_dict(),
                "global_step": 3,
                "sdegen": {"cfg": to_plain(c), "data": data_info(data), "kind": kind},
            },
            d / name / "checkpoints" / "last.ckpt",
        )
    return d


#: (arguments, regular expression the single stderr line must match); {d} is the inputs folder
CASES = [
    # the task group means what each command can run
    (
        "sample task=classifier",
        r"task=classifier is not a task of `sdegen sample`; its tasks: generate, inpaint, colorize",
    ),
    ("train task=inpaint", r"task=inpaint is not a task of `sdegen train`; its tasks: generate, classifier"),
    # typos: a key that does not exist, a `+key` that nothing reads, a model argument, a sampler option
    ("sample sampler.stepz=10", r"sampler\.stepz is not a config key \(check the spelling; `sdegen sample --cfg job`"),
    ("sample +sampler.stepz=10", r"sampler\.stepz is not a config key; valid keys here: _target_, steps, eps"),
    ("train +n_sample=3", r"\+n_sample=3 adds a key that `sdegen train` does not read"),
    ("sample +trainer.max_steps=3", r"\+trainer\.max_steps=3 adds a key that `sdegen sample` does not read"),
    ("train +trainer.max_stepz=3 debug=fast", r"trainer\.max_stepz is not an argument of lightning\.Trainer"),
    ("train model.chanels=[8]", r"model\.chanels is not a config key"),
    ("train optim.decay=exp", r"optim\.decay must be one of none, linear, cosine \(got 'exp'\)"),
    ("train optim.decay_start=1.5", r"optim\.decay_start must be a number >= 0 and < 1 \(got 1\.5\)"),
    ("train channels_last=yes", r"channels_last must be true or false \(got 'yes'\)"),
    (
        "train compile_mode=fastest",
        r"compile_mode must be one of default, reduce-overhead, max-autotune, "
        r"max-autotune-no-cudagraphs \(got 'fastest'\)",
    ),
    (
        "train trainer.precision=bf15-mixed",
        r"trainer\.precision must be one of 32-true, bf16-mixed, 16-mixed, .* \(got 'bf15-mixed'\)",
    ),
    (
        "train +model.chanels=[8] debug=fast",
        r"model\.chanels is not a config key; valid keys here: _target_, .*channels",
    ),
    ("sample sde=foo", r"sde=foo is not a valid choice; valid sde values: subvp, ve, vp"),
    ("sample sde=ve schedule=cosine", r"sde=ve uses its geometric"),
    ("bogus", r"unknown command 'bogus'"),
    # numeric ranges, before any work
    ("sample sampler.steps=0 n_samples=2", r"sampler\.steps must be an integer >= 1 and <= 100000 \(got 0\)"),
    # a sampler's own option with a bad value: one line from the sampler function, not a traceback
    (
        "sample data=gmm model=gmm sampler=unipc sampler.variant=bh3 n_samples=2",
        r"sampler\.variant must be one of bh1, bh2 \(got 'bh3'\)",
    ),
    (
        "sample data=gmm model=gmm sampler=unipc sampler.corrector=maybe n_samples=2",
        r"sampler\.corrector must be true, false or auto \(got 'maybe'\)",
    ),
    (
        "sample data=gmm model=gmm sampler=pc sampler.predictor=leapfrog n_samples=2",
        r"sampler\.predictor must be one of euler_maruyama, .* \(got 'leapfrog'\)",
    ),
    ("sample sampler.eps=2", r"sampler\.eps must satisfy 0 < eps < T = 1, got 2"),
    ("sample n_samples=0", r"^sdegen: error: n_samples must be an integer >= 1 and <= 10000000 \(got 0\)"),
    ("train val_every=0", r"val_every must be an integer >= 1 .*\(got 0\)"),
    ("train trainer.max_steps=0", r"trainer\.max_steps must be an integer >= 1 .* or -1 \(got 0\)"),
    ("sample task=inpaint task.resample=0", r"task\.resample must be an integer >= 1 .*\(got 0\)"),
    ("train sample_grid.sampler.steps=0", r"sample_grid\.sampler\.steps must be an integer >= 1 .*\(got 0\)"),
    # checkpoints: random, empty, a classifier used as a score model, a run that contradicts the command line
    ("sample ckpt={d}/random.ckpt n_samples=2", r"random\.ckpt is not a readable checkpoint \(UnpicklingError"),
    ("sample ckpt={d}/empty.ckpt n_samples=2", r"empty\.ckpt is not a readable checkpoint \(EOFError"),
    (
        "sample ckpt={d}/clf n_samples=2",
        r"is a classifier checkpoint, not a score model; pass it as guidance\.classifier_ckpt",
    ),
    ("sample ckpt={d}/nowhere", r"no checkpoint or run folder at .*nowhere"),
    ("train resume={d}/score sde=subvp", r"last\.ckpt does not match the command line \(sde: checkpoint has VPSDE"),
    (
        "sample ckpt={d}/score guidance=cfg n_samples=2",
        r"guidance=cfg needs a class-conditional score model: train it "
        r"with model\.conditional=true",
    ),
    # data
    ("train data=npz debug=fast", r"data\.train_file is required: give data\.train_file=\.\.\."),
    ("train data=npz data.train_file={d}/missing.npz debug=fast", r"data=npz: .*missing\.npz does not exist"),
    ("train data=npz data.train_file={d}/labels.npz debug=fast", r"has 10 images but labels of shape \(7,\)"),
    ("train data=npz data.train_file={d}/corrupt.npz debug=fast", r"corrupt\.npz is not a readable \.npz file"),
    ("train data=imagefolder data.root={d}/emptyfolder debug=fast", r"emptyfolder has no class folders with images"),
    ("train data=imagefolder data.root={d}/nowhere debug=fast", r"data\.root=.*nowhere is not a folder"),
    ("sample data.params_file={d}/nan_gmm.npz n_samples=4", r"means, stds and weights must be finite numbers"),
    ("train trainer=gpu debug=fast", r"trainer\.accelerator=gpu .* CUDA is not available"),
    ("sample device=cuda:3", r"device=cuda:3 but CUDA is not available" if not torch.cuda.is_available() else r"cuda"),
    # eval: samples of any `sdegen sample` run, guidance only where it applies
    ("eval samples={d}/corrupt.npz metric=fid", r"samples=.*corrupt\.npz is not a readable \.npz file"),
    ("eval samples={d}/sample_run/samples.npz metric=fid", r"cannot tell which data .*samples\.npz was drawn from"),
    (
        "eval samples={d}/sample_run/samples.npz metric=fid data=gmm",
        r"have shape \(1, 28, 28\) but the data have \(1, 4, 4\)",
    ),
    (
        "eval samples={d}/sample_run/samples.npz guidance=classifier",
        r"guidance=classifier applies when eval draws the samples",
    ),
    ("eval metric=fud", r"metric must be one of fid, kid, pr, is, bpd, gap, all, or a list of them \(got 'fud'\)"),
    # eval: every prerequisite (Inception, IS logits) is checked before sampling; a pickle .pth never runs
    # (its payload would create {d}/PWNED: the inputs folder must stay unchanged)
    ("eval eval.kid_subset_size=1", r"eval\.kid_subset_size must be an integer >= 2 .*\(got 1\)"),
    ("eval eval.bpd.n_probes=0", r"eval\.bpd\.n_probes must be an integer >= 1 .*\(got 0\)"),
    (
        "eval ckpt={d}/score eval.inception_weights=/nope.pth n_samples=2 sampler.steps=1",
        r"eval\.inception_weights=/nope\.pth: no such file; install the project's dependencies",
    ),
    (
        "eval ckpt={d}/score eval.inception_weights={d}/payload.pth n_samples=2 sampler.steps=1",
        r"payload\.pth is not a plain state dict of tensors: refused without running it \(Unsupported global: GLOBAL",
    ),
    (
        "eval ckpt={d}/score metric=is n_samples=2 sampler.steps=1",
        r"metric=is: the inception-v3-tf-2015-12-05 \(TorchScript default_1\.pt .*\) has no logits",
    ),
    # eval.judge (the MNIST digit judge): file, MNIST test digits and 28×28 digits, checked before sampling;
    # a pickle payload given as the judge is refused unrun
    (
        "eval eval.judge={d}/nowhere.pt",
        r"eval\.judge=.*nowhere\.pt: no such file; train the judge with "
        r"`python scripts/digit_judge\.py train`",
    ),
    ("eval eval.judge={d}/judge.pt", r"eval\.judge needs eval\.mnist_root .* give eval\.mnist_root=\.\./shared/data"),
    (
        "eval eval.judge={d}/judge.pt eval.mnist_root={d}/nowhere",
        r"eval\.judge scores 28×28 single-channel digits, but the data \(GMMDataModule\) have shape \(1, 4, 4\)",
    ),
    (
        "eval ckpt={d}/score eval.judge={d}/payload.pth eval.mnist_root={d}/nowhere n_samples=2",
        r"eval\.judge=.*payload\.pth: .*payload\.pth is not a digit judge's state dict "
        r"\(UnpicklingError.*refused without running it",
    ),
    (
        "eval ckpt={d}/score eval.judge={d}/judge.pt eval.mnist_root={d}/nowhere n_samples=2",
        r"eval\.mnist_root=.*nowhere: no MNIST test split there",
    ),
    ("report {d}/emptyfolder", r"no runs \(folders with \.hydra/config\.yaml\) under"),
]


def run_in_process(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        cli.main(["sdegen", *args])
    captured = capsys.readouterr()
    return err.value.code, captured.err, captured.out


@pytest.mark.parametrize("args, pattern", CASES, ids=[c[0].split(" ", 1)[-1][:60] for c in CASES])
def test_bad_input_is_one_line(inputs, tmp_path, monkeypatch, capsys, args, pattern):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("TORCH_HOME", str(inputs / "no_torch_home"))  # offline: no torch-fidelity weights in the hub
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    code, err, _ = run_in_process([*args.format(d=inputs).split(), f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("sdegen: error: ") and re.search(pattern, lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing may be written"  # no run folder, no ./outputs
    assert sorted(p.relative_to(inputs) for p in inputs.rglob("*")) == before  # e.g. no empty report/


def test_verbose_shows_the_traceback(inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="sampler.steps must be an integer >= 1"):
        cli.main(["sdegen", "sample", "sampler.steps=0", "verbose=true", f"hydra.run.dir={tmp_path / 'run'}"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        "sample sampler.steps=0 n_samples=2",
        "sample ckpt={d}/random.ckpt n_samples=2",
        "eval ckpt={d}/score eval.inception_weights={d}/payload.pth n_samples=2",
    ],
)
def test_bad_input_as_a_subprocess(inputs, tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [*SDEGEN, *args.format(d=inputs).split(), f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("sdegen: error: "), proc.stderr
    assert proc.stdout.strip() == "" and list(Path(tmp_path).iterdir()) == []
    assert not (inputs / "PWNED").exists()  # the crafted .pth was refused without running its payload


def test_a_non_finite_loss_mid_run_is_one_line_and_in_cli_log(tmp_path, monkeypatch, capsys):
    """An error after the run started (here a diverging loss) keeps the run folder, and cli.log has the line."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code, err, _ = run_in_process(
        [
            "train",
            "debug=fast",
            "logger=csv",
            "data.limit=16",
            "optim.lr=1e30",
            "optim.warmup=0",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}",
        ],
        capsys,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert re.match(r"sdegen: error: training stopped: the loss is (nan|inf) at step \d+", lines[0]), lines[0]
    assert lines[0] in (run / "cli.log").read_text()


@pytest.mark.slow
def test_is_offline_as_a_subprocess(inputs, tmp_path):
    """A real process: the offline Inception is named in one log line, and metric=is (no logits) is one
    line on stderr (no library warning beside it), before any sampling."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["TORCH_HOME"] = str(inputs / "no_torch_home")  # no torch-fidelity weights in torch hub's cache
    proc = subprocess.run(
        [*SDEGEN, "eval", f"ckpt={inputs / 'score'}", "metric=is", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.match(r"sdegen: error: metric=is: the inception-v3-tf-2015-12-05 .* has no logits", proc.stderr)
    named = [line for line in proc.stdout.splitlines() if "Inception: " in line]
    assert len(named) == 1 and "sha256 7ff4a85c3a63" in named[0] and "tf1-bilinear" in named[0], proc.stdout
    assert list(Path(tmp_path).iterdir()) == []  # nothing sampled, nothing written
