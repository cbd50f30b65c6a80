"""SDE sweeps run what they are named for, and a choice that changes nothing in training is said or refused:
the sweeper's jobs, the refusal of an SDE sweep under loss=edm, the one-line notice of a single run, the old
loss.weighting key, and experiment=sde_sweep end to end (different losses per SDE configuration)."""

import json
import os
import subprocess
import sys

import pytest

from sdegen import cli
from sdegen.runtime.sweeps import pair_reason, sde_agnostic_sweep, sde_jobs, sde_notice

THESIS = ["ve-geometric", "vp-linear", "vp-cosine", "subvp-linear", "subvp-cosine"]


def product(**lists):
    jobs = [[]]
    for key, values in lists.items():
        jobs = [[*job, f"{key}={v}"] for job in jobs for v in values]
    return jobs


def named(jobs, choices=None):
    choices = choices or {"sde": "vp", "schedule": "linear"}
    return [
        f"{dict(o.split('=') for o in job).get('sde', choices['sde'])}-"
        f"{dict(o.split('=') for o in job).get('schedule', choices['schedule'])}"
        for job in jobs
    ]


def test_pairs_follow_the_sde_configs():
    assert pair_reason("vp", "linear") is None and pair_reason("ve", "geometric") is None
    assert "geometric" in pair_reason("ve", "linear") and pair_reason("subvp", "geometric") is not None


def test_the_readme_sweep_is_the_thesis_five_with_ve_named_for_its_schedule():
    jobs, note = sde_jobs(
        product(sde=["ve", "vp", "subvp"], schedule=["linear", "cosine"]), {"sde": "vp", "schedule": "linear"}
    )
    assert named(jobs) == THESIS
    assert note.count("\n") == 0 and "sde=ve" in note and "schedule=geometric" in note
    # with geometric in the list too: VE once, VP/sub-VP with the VE schedule left out (said in the same line)
    jobs, note = sde_jobs(
        product(sde=["ve", "vp", "subvp"], schedule=["geometric", "linear", "cosine"], seed=["1"]),
        {"sde": "vp", "schedule": "linear"},
    )
    assert named(jobs) == THESIS and all("seed=1" in job for job in jobs)
    assert "vp-geometric" in note and "subvp-geometric" in note
    # nothing to change: no line; VE without a schedule override keeps its own default
    jobs, note = sde_jobs(
        product(sde=["vp", "subvp"], schedule=["linear", "cosine"]), {"sde": "vp", "schedule": "linear"}
    )
    assert note is None and len(jobs) == 4
    jobs, note = sde_jobs(product(sde=["ve", "vp"]), {"sde": "vp", "schedule": "linear"})
    assert note is None and named(jobs, {"sde": "vp", "schedule": "geometric"})[0] == "ve-geometric"


def test_an_sde_sweep_is_refused_only_under_a_loss_that_ignores_the_sde():
    edm = {"sde": "vp", "schedule": "linear", "loss": "edm"}
    jobs = product(sde=["ve", "vp", "subvp"])
    reason = sde_agnostic_sweep(jobs, edm)
    assert reason and "loss=edm" in reason and "loss=sigma2" in reason and "\n" not in reason
    assert sde_agnostic_sweep(product(schedule=["linear", "cosine"]), edm)
    for loss in ("sigma2", "likelihood", "likelihood_is"):
        assert sde_agnostic_sweep(jobs, {**edm, "loss": loss}) is None
        assert sde_agnostic_sweep(product(sde=["ve", "vp"], loss=[loss]), edm) is None
    assert sde_agnostic_sweep(product(sde=["ve", "vp"], loss=["sigma2", "edm"]), edm)
    assert sde_agnostic_sweep(product(seed=["1", "2"], loss=["edm", "sigma2"]), edm) is None  # one SDE: fine
    assert sde_agnostic_sweep(jobs, {"sde": "vp", "schedule": "linear"}) is None  # sample/eval: no loss


def test_the_notice_of_a_single_run():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"loss": {"name": "edm"}, "task": {"name": "generate"}})
    line = sde_notice(cfg, ["sde", "trainer.max_steps"])
    assert line.startswith("[sdegen] note") and "\n" not in line
    for words in ("sde=", "sampling", "prior", "bits/dim", "not the network", "σ/α", "loss=sigma2"):
        assert words in line, words
    assert "schedule=" in sde_notice(cfg, ["schedule"])
    assert sde_notice(cfg, ["seed"]) is None
    for loss in ("sigma2", "likelihood", "likelihood_is"):
        assert sde_notice(OmegaConf.create({"loss": {"name": loss}}), ["sde", "schedule"]) is None
    assert sde_notice(OmegaConf.create({"loss": {"name": "edm"}, "task": {"name": "classifier"}}), ["sde"]) is None
    assert sde_notice(OmegaConf.create({"sampler": {}}), ["sde"]) is None


def main_lines(argv, capsys):
    """(exit code, stdout lines starting with [sdegen], stderr lines) of one in-process `sdegen` call."""
    code = 0
    try:
        cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return (
        code,
        [line for line in out.out.splitlines() if line.startswith("[sdegen]")],
        [line for line in out.err.splitlines() if line.strip()],
    )


def test_cli_refuses_an_edm_sde_sweep_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = main_lines(["sdegen", "train", "-m", "sde=ve,vp,subvp", "loss=edm", "dry_run=true"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("sdegen: error:"), err
    assert "loss=edm" in err[0] and "loss=sigma2" in err[0] and not out
    assert not list(tmp_path.iterdir())
    code, out, err = main_lines(
        [
            "sdegen",
            "train",
            "-m",
            "sde=ve,vp,subvp",
            "schedule=linear,cosine",
            "loss=sigma2",
            "dry_run=true",
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        capsys,
    )
    assert code == 0, err
    dry = [line for line in out if line.startswith("[sdegen] dry run")]
    assert [line.rsplit("/", 1)[-1] for line in dry] == [f"{i}_{name}" for i, name in enumerate(THESIS)]
    assert "sde=ve schedule=geometric" in dry[0]


def test_cli_single_run_notice_and_old_loss_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = main_lines(
        ["sdegen", "train", "sde=subvp", "schedule=linear", "loss=edm", "dry_run=true", f"hydra.run.dir={tmp_path}/a"],
        capsys,
    )
    assert code == 0 and len([line for line in out if line.startswith("[sdegen] note")]) == 1, (out, err)
    code, out, err = main_lines(
        ["sdegen", "train", "sde=subvp", "loss=sigma2", "dry_run=true", f"hydra.run.dir={tmp_path}/b"], capsys
    )
    assert code == 0 and not [line for line in out if line.startswith("[sdegen] note")]
    code, out, err = main_lines(["sdegen", "train", "loss.weighting=sigma2"], capsys)
    assert code == 2 and len(err) == 1 and "loss=sigma2" in err[0] and "loss.weighting" in err[0]
    code, out, err = main_lines(["sdegen", "train", "loss.sigma_data=0.3"], capsys)
    assert code == 2 and len(err) == 1 and "loss.data_std" in err[0]


@pytest.mark.slow
def test_sde_sweep_experiment_trains_five_different_configurations(tmp_path):
    """experiment=sde_sweep at a few steps: five jobs named for what ran, and five different training losses
    (same seed, data and initial network: under loss=sigma2 the noise levels differ per SDE configuration)."""
    args = [
        "experiment=sde_sweep",
        "debug=fast",
        "trainer.max_steps=2",
        "data.limit=16",
        "data.batch_size=8",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "sample_grid.at_end=false",
        "sample_grid.every_n_steps=0",
        "trainer.limit_val_batches=0",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    result = subprocess.run(
        [sys.executable, "-m", "sdegen", "train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == [f"{i}_{name}" for i, name in enumerate(THESIS)]
    losses = {name: json.loads((tmp_path / name / "train_summary.json").read_text())["train/loss"] for name in folders}
    assert len(set(losses.values())) == 5, losses
