"""``sdegen sample``: files and arrays, compare figure, determinism, setup() and checkpoints."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sdegen import cli
from sdegen.cli import config_dir
from sdegen.models.gmm import GMMScore
from sdegen.runtime import setup as runtime_setup
from sdegen.runtime.config import build_sde, to_plain

SDEGEN = [sys.executable, "-m", "sdegen"]


def sample_args(out: Path, *overrides):
    return ["sample", "model=gmm", "data=gmm", f"hydra.run.dir={out}", "progress=false", *overrides]


def run_sample(out: Path, *overrides, capsys=None):
    """`sdegen sample` in this process (the command line's own entry is tested in test_cli.py, and one real
    process runs in test_sample_is_deterministic_for_a_seed); returns its exit code and captured output."""
    if capsys is not None:
        capsys.readouterr()
    code = 0
    try:
        cli.main(["sdegen", *sample_args(out, *overrides)])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr() if capsys is not None else None
    return SimpleNamespace(
        returncode=code, stdout=captured.out if captured else "", stderr=captured.err if captured else ""
    )


def test_sample_writes_files(tmp_path, capsys):
    proc = run_sample(
        tmp_path,
        "sampler=dpm_solver",
        "n_samples=50",
        "batch_size=20",
        "sde=subvp",
        "compare=[em,heun]",
        "snapshot_every=5",
        capsys=capsys,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tmp_path / "samples.npz") as f:
        assert f["x"].shape == (50, 1, 4, 4) and f["x"].dtype == np.float32 and np.isfinite(f["x"]).all()
        assert int(f["nfe"]) == 20 and f["nfe_per_batch"].tolist() == [20, 20, 20] and int(f["nfe_total"]) == 60
        assert float(f["seconds"]) > 0
        assert "images" not in f.files  # not image data
    for name in ("grid.png", "evolution.png", "compare.png", "metrics.json", "config.yaml"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert "focus at σ/α 2.31 = 4 × data std 0.577" in proc.stdout + proc.stderr  # the centre it used, and why
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["nfe"] == 20 and metrics["nfe_total"] == 60
    assert metrics["compare/em/nfe"] == 1001 and metrics["compare/heun/nfe"] == 49
    assert "compare: each sampler at its own default steps (em 1000, heun 24)" in proc.stdout + proc.stderr
    assert (tmp_path / "csv" / "metrics.csv").is_file()


@pytest.mark.slow
def test_sample_is_deterministic_for_a_seed(tmp_path):
    """Run a is a separate process, b and c run in this one: the seed fixes the draws across processes."""
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        overrides = [
            "sampler=pc",
            "sampler.steps=20",
            "n_samples=12",
            "batch_size=5",
            "sde=ve",
            f"seed={seed}",
            "device=cpu",
        ]
        if name == "a":
            proc = subprocess.run(
                [*SDEGEN, *sample_args(tmp_path / name, *overrides)], capture_output=True, text=True, timeout=600
            )
        else:
            proc = run_sample(tmp_path / name, *overrides)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = np.load(tmp_path / name / "samples.npz")["x"]
    assert np.array_equal(runs["a"], runs["b"])
    assert not np.allclose(runs["a"], runs["c"])


def test_compare_runs_at_the_requested_steps_and_labels_nfe(tmp_path, monkeypatch):
    """`sampler.steps=4 compare=pc`: one sampler named pc (a bare name is one name), run at 4 steps (2 NFE
    per step + the final denoise), its panel labelled with steps and NFE."""
    from sdegen import cli
    from sdegen.commands import sample

    titles = []
    monkeypatch.setattr(sample.viz, "comparison_figure", lambda panels, *a, **k: titles.extend(panels))
    run = tmp_path / "run"
    cli.main(
        [
            "sdegen",
            "sample",
            "model=gmm",
            "data=gmm",
            "sampler.steps=4",
            "compare=pc",
            "n_samples=8",
            "progress=false",
            f"hydra.run.dir={run}",
        ]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["nfe"] == 4 + 1 and metrics["compare/pc/nfe"] == 2 * 4 + 1
    assert titles == ["pc (4 steps, 9 NFE)"] and "every sampler at sampler.steps=4" in (run / "cli.log").read_text()


def test_the_default_sampler_and_the_dry_run_say_what_runs(tmp_path, capsys):
    """`sdegen sample` and `sdegen eval` compose dpm_solver (20 NFE); `dry_run=true` prints the resolved sampler
    settings and marks those that were auto."""
    for command in ("sample", "eval"):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=command)
        assert cfg.sampler._target_ == "sdegen.samplers.dpm_solver.sample_dpm_solver" and cfg.sampler.steps == 19
    proc = run_sample(tmp_path / "run", "dry_run=true", "sampler.steps=9", capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [s for s in proc.stdout.splitlines() if s.startswith("[sdegen] sampler dpm_solver:")]
    assert len(line) == 1 and "start_noise=10* end_noise" not in line[0]  # keys keep the YAML's order
    assert "end_noise=0.02* start_noise=10*" in line[0] and "denoise=half*" in line[0] and "order=3 " in line[0]
    assert "(* = auto, the preset for 9 steps" in proc.stdout and not (tmp_path / "run").exists()


def test_bad_sampler_is_a_one_line_error(tmp_path, capsys):
    proc = run_sample(tmp_path, "sampler=nope", capsys=capsys)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("sdegen: error: sampler=nope is not a valid choice")
    assert len(proc.stderr.strip().splitlines()) == 1 and not tmp_path.exists() or not any(tmp_path.iterdir())


def compose_sample(*overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="sample", overrides=list(overrides))


def test_setup_builds_the_exact_score():
    cfg = compose_sample("sde=vp", "schedule=cosine", "device=cpu")
    s = runtime_setup.build_setup(cfg)
    assert isinstance(s.score_model, GMMScore) and not s.score_model.training
    assert s.shape == (1, 4, 4) and s.data.num_classes == 4 and s.device == torch.device("cpu")
    assert type(s.sde).__name__ == "VPSDE" and type(s.sde.schedule).__name__ == "CosineSchedule"
    a = torch.randn(3, generator=s.generator(5))
    assert torch.equal(a, torch.randn(3, generator=s.generator(5)))
    assert s.data_std == pytest.approx(s.data.mixture.data_std)  # data=gmm: the exact std (focus grid's centre)


@pytest.fixture
def fake_checkpoints(monkeypatch, tmp_path):
    """A stand-in for runtime.checkpoints.load_score_model with the agreed contract:
    load_score_model(path, map_location) -> (model with EMA weights, plain config dict)."""
    stored = to_plain(compose_sample("sde=subvp", "schedule=linear"))
    loaded = []

    def load_score_model(path, map_location=None):
        cfg = OmegaConf.create(stored)
        import hydra.utils

        data = hydra.utils.instantiate(cfg.data)
        loaded.append(path)
        return GMMScore(data.mixture, build_sde(cfg)), stored

    monkeypatch.setattr(runtime_setup, "load_score_model", load_score_model)
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"fake")
    return ckpt, stored, loaded


def test_setup_from_checkpoint_uses_its_config(fake_checkpoints):
    ckpt, stored, loaded = fake_checkpoints
    cfg = compose_sample(f"ckpt={ckpt}", "device=cpu")  # composed default is sde=vp: the checkpoint wins
    s = runtime_setup.build_setup(cfg)
    assert loaded == [str(ckpt)] and type(s.sde).__name__ == "SubVPSDE" and s.ckpt_cfg == stored
    # the data's std: the checkpoint's record when it has one, else the data module's
    assert s.data_std == pytest.approx(s.data.mixture.data_std)
    stored["data_info"] = {"data_std": 0.77}
    assert runtime_setup.build_setup(cfg).data_std == 0.77


def test_checkpoint_conflicts_only_for_explicit_overrides(fake_checkpoints):
    ckpt, stored, _ = fake_checkpoints
    cfg = compose_sample(f"ckpt={ckpt}", "sde=ve")
    assert runtime_setup.checkpoint_conflicts(cfg, stored, ["ckpt", "sampler"]) == []
    conflicts = runtime_setup.checkpoint_conflicts(cfg, stored, ["ckpt", "sde"])
    assert len(conflicts) == 1 and conflicts[0].startswith("sde: checkpoint has SubVPSDE")
    same = compose_sample(f"ckpt={ckpt}", "sde=subvp", "schedule=linear")
    assert runtime_setup.checkpoint_conflicts(same, stored, ["sde", "schedule"]) == []
    other = compose_sample(f"ckpt={ckpt}", "sde=subvp", "schedule=cosine")
    conflicts = runtime_setup.checkpoint_conflicts(other, stored, ["sde", "schedule"])
    assert [c.split(":")[0] for c in conflicts] == ["sde", "schedule"]


def test_cli_refuses_a_mismatched_checkpoint(fake_checkpoints, tmp_path, monkeypatch, capsys):
    from sdegen import cli

    ckpt, _, _ = fake_checkpoints
    monkeypatch.setattr(sys, "argv", ["sdegen"])
    with pytest.raises(SystemExit) as err:
        cli.main(["sdegen", "sample", f"ckpt={ckpt}", "sde=ve", f"hydra.run.dir={tmp_path / 'run'}", "progress=false"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2 and len(lines) == 1
    assert "does not match the command line" in lines[0] and "sde:" in lines[0]
    assert not (tmp_path / "run").exists()
