"""The ``sdegen`` command: ``sdegen train|sample|eval|report [HYDRA OVERRIDES]``.

Each subcommand is one Hydra app whose primary config is ``configs/<command>.yaml``.  The
subcommand is hidden from Hydra's parser only while Hydra parses, and ``sys.argv`` is restored
before the command runs: Lightning's DDP launcher re-executes ``sys.argv`` for every rank, so
the relaunched processes run ``sdegen train ...`` again with the same overrides.
"""

from __future__ import annotations

import importlib
import importlib.resources
import sys
from pathlib import Path

COMMANDS = {
    "train": ("sdegen.training.run", "train a score model or a time-dependent classifier"),
    "sample": ("sdegen.tasks.sample", "generate (or inpaint/colorize) images with any sampler"),
    "eval": ("sdegen.metrics.run", "FID / IS / bits-per-dim of a checkpoint or a samples.npz"),
    "report": ("sdegen.report.run", "tables and figures from a run or multirun folder"),
}

#: config groups whose values are checked before Hydra starts (one-line errors)
GROUPS = ("sde", "schedule", "model", "sampler", "guidance", "task", "data", "trainer", "logger",
          "experiment", "debug")


def config_dir() -> Path:
    """Configs ship inside the wheel (``sdegen/configs``); an editable install uses the repo's."""
    packaged = Path(str(importlib.resources.files("sdegen"))) / "configs"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "configs"
    if repo.is_dir():
        return repo
    raise SystemExit("sdegen: cannot find the configs folder (reinstall the package)")


def group_choices(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def usage() -> str:
    lines = ["usage: sdegen {train,sample,eval,report} [--help|--cfg job|-m] [key=value ...]", "",
             "Score-based generative modelling with SDEs (VE, VP, sub-VP).", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "config groups (choose with group=name):"]
    lines += [f"  {g:<11} {', '.join(group_choices(g))}" for g in GROUPS if group_choices(g)]
    lines += ["", "examples:",
              "  sdegen train sde=subvp schedule=linear",
              "  sdegen train -m sde=ve,vp,subvp schedule=linear,cosine",
              "  sdegen train experiment=sde_sweep dry_run=true   # list the jobs, run nothing",
              "  sdegen sample model=gmm data=gmm sampler=dpm_solver",
              "  sdegen sample ckpt=outputs/train/.../checkpoints/last.ckpt sampler=pc",
              "  sdegen eval metric=bpd model=gmm data=gmm",
              "  sdegen report outputs/multirun/train/<date>",
              "", "'sdegen COMMAND --help' shows that command's composed config and Hydra's options."]
    return "\n".join(lines)


def check_group_values(args: list[str]) -> str | None:
    """A one-line error for ``group=value`` overrides naming a config that does not exist."""
    for arg in args:
        if "=" not in arg or arg.startswith(("-", "~")):
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        if key not in GROUPS or value in ("null", "none") and key in ("experiment", "debug"):
            continue
        if value.startswith(("choice(", "range(", "glob(", "interval(")):
            continue  # Hydra's sweep functions: leave them to Hydra
        choices = group_choices(key)
        for v in (v.strip() for v in value.split(",")):
            if v not in choices:
                return f"sdegen: error: {key}={v} is not a valid choice; valid {key} values: {', '.join(choices)}"
    return None


def _positional_to_override(command: str, args: list[str]) -> list[str]:
    """``sdegen report DIR`` is shorthand for ``sdegen report run_dir=DIR``."""
    if command != "report":
        return args
    return [f"run_dir={a}" if ("=" not in a and not a.startswith("-")) else a for a in args]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return
    command = argv[1]
    if command not in COMMANDS:
        raise SystemExit(f"sdegen: error: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
    args = _positional_to_override(command, argv[2:])
    error = check_group_values(args)
    if error:
        raise SystemExit(error)

    import hydra  # imported late: `sdegen --help` stays fast

    def task(cfg):
        sys.argv = argv  # restore for Lightning's DDP relaunch (it re-executes sys.argv)
        from .config import guard

        if not guard(cfg):
            return None
        if cfg.get("dry_run", False):
            from hydra.core.hydra_config import HydraConfig

            hc = HydraConfig.get()
            picked = " ".join(f"{g}={hc.runtime.choices[g]}" for g in GROUPS if hc.runtime.choices.get(g))
            print(f"[sdegen] dry run: {command} {picked} -> {hc.runtime.output_dir}", flush=True)
            return None
        return importlib.import_module(COMMANDS[command][0]).main(cfg)

    sys.argv = [argv[0], *args]
    app = hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(task)
    try:
        app()
    finally:
        sys.argv = argv


if __name__ == "__main__":
    main()
