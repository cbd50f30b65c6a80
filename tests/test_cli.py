"""The command line: help, config composition, one-line errors, multirun skipping, DDP-safe argv."""

import subprocess
import sys
import zipfile

import pytest

from sdegen import cli


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sdegen", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_help_lists_commands_and_groups():
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("train", "sample", "eval", "report", "sde", "subvp, ve, vp", "schedule"):
        assert word in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_cfg_job_composes_sde_and_schedule(tmp_path, command):
    out = run_cli(command, "--cfg", "job", "sde=subvp", "schedule=linear", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sdegen.sde.SubVPSDE" in out.stdout and "sdegen.sde.LinearSchedule" in out.stdout
    out = run_cli("sample", "--cfg", "job", "sde=ve", cwd=tmp_path)
    assert "sdegen.sde.GeometricSigma" in out.stdout, "sde=ve must switch the schedule to geometric"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (("sample", "sde=foo"), "valid sde values: subvp, ve, vp"),
        (("sample", "-m", "sde=vp,foo"), "valid sde values: subvp, ve, vp"),
        (("sample", "sampler=nope"), "valid sampler values:"),
        (("sample", "sde=ve", "schedule=cosine"), "sde=ve uses its geometric"),
        (("bogus",), "unknown command 'bogus'"),
    ],
)
def test_invalid_choices_fail_with_one_line(tmp_path, args, needle):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "sample"])
def test_multirun_runs_ve_once_and_skips_the_other_ve_pair(tmp_path, command):
    """The README's sweep sde=ve,vp,subvp x schedule=linear,cosine: 4 VP/sub-VP jobs and VE once, with its
    geometric σ(t) (one line says so); training sweeps use a loss that follows the SDE."""
    loss = ["loss=sigma2"] if command == "train" else []
    out = run_cli(command, "-m", "sde=ve,vp,subvp", "schedule=linear,cosine", *loss, "dry_run=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ran = [line for line in out.stdout.splitlines() if line.startswith("[sdegen] dry run")]
    once = [line for line in out.stdout.splitlines() if "sde=ve runs with its own schedule=geometric" in line]
    assert len(ran) == 5 and len(once) == 1, out.stdout
    assert sum("sde=ve schedule=geometric" in line for line in ran) == 1


@pytest.mark.slow
def test_sde_sweep_experiment_runs_exactly_the_five_thesis_configurations(tmp_path):
    out = run_cli("train", "experiment=sde_sweep", "dry_run=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ran = sorted(
        " ".join(w for w in line.split() if w.startswith(("sde=", "schedule=")))
        for line in out.stdout.splitlines()
        if line.startswith("[sdegen] dry run")
    )
    assert ran == sorted(
        [
            "sde=ve schedule=geometric",
            "sde=vp schedule=linear",
            "sde=vp schedule=cosine",
            "sde=subvp schedule=linear",
            "sde=subvp schedule=cosine",
        ]
    )


def test_argv_is_intact_when_the_command_runs(tmp_path, monkeypatch):
    """Lightning's DDP launcher re-executes sys.argv: the subcommand must still be in it."""
    from sdegen.commands import sample

    seen = {}
    monkeypatch.setattr(sample, "main", lambda cfg: seen.setdefault("argv", list(sys.argv)))
    argv = ["sdegen", "sample", "sde=subvp", f"hydra.run.dir={tmp_path}/run"]
    monkeypatch.setattr(sys, "argv", list(argv))
    cli.main()
    assert seen["argv"] == argv
    assert sys.argv == argv


def test_report_positional_directory_becomes_override():
    assert cli._positional_to_override("report", ["outputs/x", "foo=1"]) == [
        "run_dir=outputs/x",
        "foo=1",
        "hydra.run.dir=outputs/x/report",
        "hydra.output_subdir=null",
    ]
    assert cli._positional_to_override("report", ["outputs/x", "hydra.run.dir=r"]) == [
        "run_dir=outputs/x",
        "hydra.run.dir=r",
    ]
    assert cli._positional_to_override("train", ["outputs/x"]) == ["outputs/x"]


@pytest.mark.slow
def test_wheel_ships_the_configs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(cli.config_dir().parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("sdegen-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "sdegen/configs/train.yaml",
        "sdegen/configs/sde/ve.yaml",
        "sdegen/configs/schedule/cosine.yaml",
        "sdegen/cli.py",
    ):
        assert needed in names
