"""Every choice of every config group under every command: valid ones compose and pass the checks that
run before any work (and a dry run through the CLI); invalid ones are one-line errors."""

import pytest
from hydra import compose, initialize_config_dir

from sdegen import cli
from sdegen.errors import UserError
from sdegen.runtime.config import TASKS, check_config, config_dir, group_choices, incompatibility
from sdegen.runtime.setup import check_model_args

#: groups of each command's defaults list (`group@package` for packaged groups)
COMMAND_GROUPS = {
    "train": [
        "sde",
        "schedule",
        "loss",
        "model",
        "data",
        "task",
        "sampler@sample_grid.sampler",
        "trainer",
        "logger",
        "experiment",
        "debug",
    ],
    "sample": ["sde", "schedule", "model", "data", "sampler", "guidance", "task", "logger", "experiment"],
    "eval": ["sde", "schedule", "model", "data", "sampler", "guidance", "task", "logger", "experiment"],
}


def compose_cfg(command, *overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=command, overrides=list(overrides))


def cases():
    for command, groups in COMMAND_GROUPS.items():
        for group in groups:
            name = group.split("@", 1)[0]
            for choice in group_choices(name):
                yield command, group, choice


def expected_error(command, group, choice):
    name = group.split("@", 1)[0]
    if name == "task" and choice not in TASKS[command]:
        return f"task={choice} is not a task of `sdegen {command}`"
    if name == "experiment" and choice == "sde_sweep" and command != "train":  # it sets loss=, a train group
        return f"experiment=sde_sweep is not an experiment of `sdegen {command}`"
    if name == "schedule" and choice == "geometric":
        return "sde=vp is built from a β(t) schedule"
    return None


@pytest.mark.parametrize("command, group, choice", list(cases()), ids=lambda v: str(v))
def test_every_choice(command, group, choice):
    override = f"{group}={choice}"
    error = expected_error(command, group, choice)
    if error and group in ("task", "experiment"):
        with pytest.raises(UserError, match=error.replace("`", ".").replace("(", ".")):
            cli.check_args(command, [override])
        return
    cli.check_args(command, [override])
    cfg = compose_cfg(command, override)
    if error:
        assert error in incompatibility(cfg)
        return
    assert incompatibility(cfg) is None
    check_config(cfg, command)
    check_model_args(cfg.get("model"))
    if group == "debug":
        check_model_args(compose_cfg(command, override, "model=ncsnpp").model)


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_dry_run_of_every_sde_configuration(tmp_path, capsys, command):
    """The whole CLI path (argument checks, composition, guard, check_config) for a sweep, in one process."""
    loss = ["loss=sigma2"] if command == "train" else []  # a training sweep of SDEs uses a loss that follows them
    cli.main(
        [
            "sdegen",
            command,
            "-m",
            "sde=vp,subvp",
            "schedule=linear,cosine",
            *loss,
            "dry_run=true",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    out = capsys.readouterr().out
    assert out.count("[sdegen] dry run") == 4
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.npz"))


def test_report_has_no_groups_but_checks_its_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as err:
        cli.main(["sdegen", "report", str(tmp_path / "empty"), f"hydra.run.dir={tmp_path / 'run'}"])
    assert err.value.code == 2
    assert capsys.readouterr().err.strip().startswith("sdegen: error: no runs")
    assert not (tmp_path / "empty" / "report").exists() and not (tmp_path / "run").exists()
