"""The ``sdegen`` command: ``sdegen train|sample|eval|report [HYDRA OVERRIDES]``.

Each subcommand is one Hydra app whose primary config is ``configs/<command>.yaml`` and whose work
is ``sdegen.commands.<command>.main(cfg)``.  The subcommand is hidden from Hydra's parser only while
Hydra parses, and ``sys.argv`` is restored before the command runs: Lightning's DDP launcher
re-executes ``sys.argv`` for every rank, so the relaunched processes run ``sdegen train ...`` again.

Every user error (a ``UserError`` from any layer, a Hydra/OmegaConf config error, a bad group
choice, a ``+key`` that nothing reads) ends as ONE line ``sdegen: error: ...`` on stderr with exit
status 2, also written to the run's ``cli.log``; a run folder that holds nothing but Hydra's own
files is removed.  ``HYDRA_FULL_ERROR=1`` or ``verbose=true`` shows the full traceback instead.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from .errors import UserError
from .runtime.config import TASKS, config_dir, group_choices

COMMANDS = {
    "train": "train a score model or a time-dependent classifier",
    "sample": "generate (or inpaint/colorize) images with any sampler",
    "eval": "FID / IS / bits-per-dim of a checkpoint or a samples.npz",
    "report": "tables and figures from a run or multirun folder",
}

#: config groups whose values are checked before Hydra starts (one-line errors)
GROUPS = (
    "sde",
    "schedule",
    "loss",
    "model",
    "sampler",
    "guidance",
    "task",
    "data",
    "trainer",
    "logger",
    "experiment",
    "debug",
)
#: nodes where `+key=value` may add a key: each is checked against the code that reads it
#: (model constructor arguments, sampler options, lightning.Trainer arguments)
OPEN_NODES = {
    "train": ("model", "sample_grid.sampler", "trainer", "hydra"),
    "sample": ("model", "sampler", "hydra"),
    "eval": ("model", "sampler", "hydra"),
    "report": ("hydra",),
}


def usage() -> str:
    lines = [
        "usage: sdegen {train,sample,eval,report} [--help|--cfg job|-m] [key=value ...]",
        "",
        "Score-based generative modelling with SDEs (VE, VP, sub-VP).",
        "",
        "commands:",
    ]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    lines += ["", "config groups (choose with group=name):"]
    lines += [f"  {g:<11} {', '.join(group_choices(g))}" for g in GROUPS if group_choices(g) and g != "task"]
    lines += [f"  {'task':<11} " + "; ".join(f"{c}: {', '.join(t)}" for c, t in TASKS.items() if t)]
    lines += [
        "",
        "examples:",
        "  sdegen train sde=subvp schedule=linear",
        "  sdegen train -m sde=ve,vp,subvp schedule=linear,cosine loss=sigma2",
        "  sdegen train experiment=sde_sweep dry_run=true   # list the jobs, run nothing",
        "  sdegen sample model=gmm data=gmm sampler=dpm_solver",
        "  sdegen sample ckpt=outputs/train/<run> sampler=pc",
        "  sdegen eval metric=bpd model=gmm data=gmm",
        "  sdegen report outputs/multirun/train/<date>",
        "",
        "'sdegen COMMAND --help' shows that command's composed config and Hydra's options.",
        "Errors are one line; HYDRA_FULL_ERROR=1 or verbose=true shows the traceback.",
    ]
    return "\n".join(lines)


def check_args(command: str, args: list[str]) -> None:
    """Group choices that do not exist, tasks the command cannot run and ``+key`` additions that
    nothing reads: ``UserError`` before Hydra starts."""
    for arg in args:
        if "=" not in arg or arg.startswith(("-", "~")):
            continue
        key, value = arg.split("=", 1)
        added = key.startswith("+")
        key = key.lstrip("+")
        if key == "model.sigma_data":
            raise UserError(
                f"model.sigma_data is not a config key: the edm preconditioning's σ_d is model.data_std={value}"
            )
        if key in ("loss.weighting", "loss.sigma_data"):  # the loss is a group: loss=<name>; edm's σ_d: loss.data_std
            hint = f"loss={value}" if key == "loss.weighting" else "loss=edm loss.data_std=..."
            raise UserError(
                f"{key} is not a config key: the loss is chosen with loss=<name> "
                f"({', '.join(group_choices('loss'))}), e.g. {hint}"
            )
        group = key.split("@", 1)[0]
        if group in GROUPS:
            if value in ("null", "none") and group in ("experiment", "debug"):
                continue
            if value.startswith(("choice(", "range(", "glob(", "interval(")):
                continue  # Hydra's sweep functions: leave them to Hydra
            choices = list(TASKS[command]) if group == "task" else group_choices(group)
            for v in (v.strip() for v in value.split(",")):
                if group == "experiment" and v in choices:
                    check_experiment(command, v)
                if v not in choices:
                    if group == "task" and v in group_choices("task"):
                        raise UserError(
                            f"task={v} is not a task of `sdegen {command}`; its tasks: {', '.join(choices)}"
                        )
                    raise UserError(f"{group}={v} is not a valid choice; valid {group} values: {', '.join(choices)}")
        elif added and not any(key == n or key.startswith((n + ".", n + "/")) for n in OPEN_NODES[command]):
            raise UserError(
                f"+{key}={value} adds a key that `sdegen {command}` does not read; check the spelling "
                f"(`sdegen {command} --cfg job` lists the keys)"
            )


#: Hydra options after which the command runs nothing of sdegen's (help, printing the config)
INFO_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "-c",
    "--cfg",
    "-i",
    "--info",
    "--resolve",
    "-p",
    "--package",
    "-sc",
    "--shell-completion",
    "--experimental-rerun",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
)
#: a multirun with more jobs than this is checked job by job as it runs (inside each job, before its work)
MAX_CHECKED_JOBS = 64


def job_overrides(args: list[str]) -> list[list[str]]:
    """The override list of every job ``args`` starts: one for a single run, the sweep's combinations for
    ``-m`` (empty when a sweep function needs Hydra's config search, e.g. ``glob``, or the sweep is large)."""
    overrides = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    if not any(a in ("-m", "--multirun") for a in args):
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if any(o.is_sweep_override() and "glob(" in o.input_line for o in parsed):
        return []
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    return jobs if len(jobs) <= MAX_CHECKED_JOBS else []


def check_composed(command: str, args: list[str]) -> None:
    """Compose each job's config (Hydra's compose API) and check it against the typed schema
    (``runtime.config.check_config``) before Hydra's app starts: a bad value is one line with nothing
    written (no run folder, no ``.hydra/``, no ``cli.log``).  Incompatible SDE × schedule pairs of a sweep
    are left to the sweep's own rule (``runtime.sweeps.guard``) inside the job."""
    if any(a in INFO_FLAGS for a in args):
        return
    from hydra import compose, initialize_config_dir

    from .runtime.config import check_config, config_dir, incompatibility

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
        for overrides in job_overrides(args):
            cfg = compose(config_name=command, overrides=overrides)
            if command != "report" and incompatibility(cfg) is not None:
                continue  # a single run fails on it in the job (with the same line); a sweep skips it
            check_config(cfg, command)


def check_run_dir(command: str, args: list[str]) -> None:
    """A ``hydra.run.dir=`` that another command holds, or (for train) that holds a finished run that
    ``resume=`` does not name: one line before Hydra writes ``.hydra/`` and ``cli.log`` into it."""
    if any(a in INFO_FLAGS for a in args) or any(a in ("-m", "--multirun") for a in args):
        return
    given = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
    for key in ("run_dir", "hydra.run.dir"):
        if key in given and Path(given[key]).expanduser().exists() and not Path(given[key]).expanduser().is_dir():
            raise UserError(f"{key}={given[key]} is a file, not a folder")
    if "hydra.run.dir" in given:
        from .runtime.rundir import check_free

        check_free(given["hydra.run.dir"], command, resume=given.get("resume"))


def _default_groups(path) -> list[str]:
    """The groups a config's defaults list selects or overrides (``override /loss: sigma2`` -> ``loss``)."""
    from omegaconf import OmegaConf

    groups = []
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []:
        for key in entry if isinstance(entry, dict) else []:
            groups.append(key.replace("override ", "").replace("optional ", "").strip().lstrip("/").split("@")[0])
    return groups


def check_experiment(command: str, name: str) -> None:
    """An experiment that sets a group the command does not have (e.g. ``loss``, read by train only) is
    an experiment of another command: one line, before Hydra composes."""
    own = set(_default_groups(config_dir() / f"{command}.yaml"))
    other = [g for g in _default_groups(config_dir() / "experiment" / f"{name}.yaml") if g not in own]
    if other:
        raise UserError(
            f"experiment={name} is not an experiment of `sdegen {command}`: it sets the {other[0]} "
            f"group, which `sdegen {command}` does not have"
        )


def _positional_to_override(command: str, args: list[str]) -> list[str]:
    """``sdegen report DIR`` is shorthand for ``sdegen report run_dir=DIR``; the report's own run folder
    (its cli.log) is ``DIR/report`` unless ``hydra.run.dir`` is given, so nothing lands in ./outputs."""
    if command != "report":
        return args
    args = [f"run_dir={a}" if ("=" not in a and not a.startswith("-")) else a for a in args]
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("run_dir=")), None)
    if run_dir and not any(a.startswith("hydra.run.dir=") for a in args):
        args += [f"hydra.run.dir={run_dir.rstrip('/')}/report", "hydra.output_subdir=null"]
    return args


# --- errors -------------------------------------------------------------------------------------------
def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def user_message(err: BaseException) -> str | None:
    """The one-line message of a user error anywhere in ``err``'s chain, or None for a bug."""
    from hydra.errors import HydraException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    for e in _chain(err):
        if isinstance(e, UserError):
            return str(e).strip().splitlines()[0] if str(e).strip() else "invalid input"
        if isinstance(e, FloatingPointError) and str(e).startswith("sdegen: "):  # a NaN/inf loss (lower optim.lr)
            return " ".join(str(e).removeprefix("sdegen: ").split())
    for e in _chain(err):
        text = str(e).strip()
        match = re.search(r"Could not override '([^']+)'", text)
        if match:
            key = match.group(1)
            return f"{key} is not a config key (check the spelling; `sdegen COMMAND --cfg job` lists the keys)"
        if isinstance(e, MissingMandatoryValue):
            key = getattr(e, "full_key", None) or re.sub(r"^Missing mandatory value:\s*", "", text.splitlines()[0])
            return f"{key} is required: give {key}=..."
        if isinstance(e, (HydraException, OmegaConfBaseException)):
            first = re.sub(r"\s+", " ", text.split("\n    full_key")[0].split("\nfull_key")[0]).strip()
            return first or type(e).__name__
        if isinstance(e, OSError) and e.errno in (28, 13, 30):  # ENOSPC, EACCES, EROFS
            return f"{e.strerror}: {e.filename or ''} (free space or choose another hydra.run.dir)".replace(" : ", ": ")
    return None


def _log_to_file(message: str) -> None:
    """Append the error to the run's cli.log (Hydra's file handler) without printing it again."""
    record = logging.LogRecord("sdegen", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


#: the first error of the jobs (raised once Hydra returns: Hydra would print its own lines for it)
_errors: list = []


def _run(command: str, cfg):
    from hydra.core.hydra_config import HydraConfig

    from .runtime.config import check_config
    from .runtime.rundir import remove_if_untouched
    from .runtime.sweeps import guard

    try:
        if not guard(cfg):
            remove_if_untouched(HydraConfig.get().runtime.output_dir)  # a skipped job leaves no folder
            return None
        check_config(cfg, command)
        if cfg.get("dry_run", False):
            hc = HydraConfig.get()
            picked = " ".join(f"{g}={hc.runtime.choices[g]}" for g in GROUPS if hc.runtime.choices.get(g))
            print(f"[sdegen] dry run: {command} {picked} -> {hc.runtime.output_dir}", flush=True)
            if command in ("sample", "eval") and cfg.get("sampler") is not None:
                from . import samplers  # what will run: `auto` values resolved, and marked

                print(f"[sdegen] {samplers.build(cfg.sampler).summary()}", flush=True)
            remove_if_untouched(hc.runtime.output_dir)
            return None
        from .runtime.loggers import route_library_logs

        route_library_logs()
        if command == "train":
            from .commands import train as module
        elif command == "sample":
            from .commands import sample as module
        elif command == "eval":
            from .commands import eval as module
        else:
            from .commands import report as module
        if command == "train":
            return module.main(cfg)  # train claims its folder itself (resume=, DDP ranks)
        from .runtime.rundir import claim

        with claim(HydraConfig.get().runtime.output_dir, command):  # one command writes into a run folder
            return module.main(cfg)
    except Exception as err:  # noqa: BLE001 - a job's error is raised again once Hydra returns (main())
        message = user_message(err)
        if message is not None:
            _log_to_file(f"sdegen: error: {message}")
            if HydraConfig.initialized():
                remove_if_untouched(HydraConfig.get().runtime.output_dir)
        else:
            import traceback

            _log_to_file("sdegen: internal error\n" + traceback.format_exc())  # the traceback in cli.log too
        _errors.append(err)
        return None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return
    command = argv[1]
    args = [a for a in argv[2:] if a.lower() not in ("verbose=true", "verbose=false")]
    verbose = any(a.lower() == "verbose=true" for a in argv[2:]) or (
        os.environ.get("HYDRA_FULL_ERROR") == "1" and not os.environ.get("SDEGEN_SET_FULL_ERROR")
    )
    try:
        if command not in COMMANDS:
            raise UserError(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
        args = _positional_to_override(command, args)
        check_args(command, args)
        check_composed(command, args)
        check_run_dir(command, args)
        _hydra_main(command, argv, args)
    except KeyboardInterrupt:
        print("sdegen: interrupted", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except Exception as err:  # user errors become one line; bugs keep their traceback
        message = user_message(err)
        if message is None or verbose:
            raise
        print(f"sdegen: error: {message.replace('sdegen COMMAND', f'sdegen {command}')}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _hydra_main(command: str, argv: list[str], args: list[str]) -> None:
    import hydra  # imported late: `sdegen --help` stays fast

    def task(cfg):
        sys.argv = argv  # restore for Lightning's DDP relaunch (it re-executes sys.argv)
        return _run(command, cfg)

    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; main() decides what the user sees
    os.environ["SDEGEN_SET_FULL_ERROR"] = "1"  # (DDP ranks inherit both: this says it was not the user)
    sys.argv = [argv[0], *args]
    app = hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(task)
    _errors.clear()
    try:
        app()
        if _errors:
            raise _errors[0]
    finally:
        sys.argv = argv
        os.environ.pop("SDEGEN_SET_FULL_ERROR", None)
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


if __name__ == "__main__":
    main()
