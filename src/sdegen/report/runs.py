"""The runs under a folder (``sdegen report``): their configuration labels, metrics and training curves.

A run is any folder under the root with ``.hydra/config.yaml``.  Its configuration label comes from the
Hydra choices (``.hydra/hydra.yaml`` runtime.choices, else the config's targets): "VE", "VP-linear",
"VP-cosine", "subVP-linear", "subVP-cosine".  Runs of one label (different seeds) are replicates.  From
each run it reads ``metrics.json`` (from ``sdegen eval``; in the run folder or any subfolder that is not a
run), the training log ``csv/metrics.csv`` (any column with "loss" in its name, ``train/loss`` preferred,
against ``step``/``epoch``) and ``train_summary.json`` (steps and wall time of ``sdegen train``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ORDER = ["VE", "VP-linear", "VP-cosine", "subVP-linear", "subVP-cosine"]
SDE_NAMES = {"ve": "VE", "vp": "VP", "subvp": "subVP", "VESDE": "VE", "VPSDE": "VP", "SubVPSDE": "subVP"}
SCHEDULE_NAMES = {"LinearSchedule": "linear", "CosineSchedule": "cosine", "GeometricSigma": "geometric"}
TRAIN_SUMMARY = "train_summary.json"


def log(msg):
    logging.getLogger("sdegen").info(msg)


def _load_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def skipped_pair(run: Path) -> bool:
    """A multirun job that ``runtime.config.guard`` skipped (an incompatible SDE × schedule pair that
    wrote nothing; the one VE job of a sweep that ran with its geometric σ(t) is kept)."""
    choices = (_load_yaml(run / ".hydra" / "hydra.yaml").get("hydra") or {}).get("runtime", {}).get("choices", {}) or {}
    sde, schedule = choices.get("sde"), choices.get("schedule")
    if not sde or not schedule or (sde == "ve") == (schedule == "geometric"):
        return False
    return not any(p.name != ".hydra" and p.suffix != ".log" for p in run.iterdir())


def config_label(run: Path) -> str:
    """ "VP-linear" etc. from the Hydra choices of the run (VE has no schedule in its name)."""
    choices = (_load_yaml(run / ".hydra" / "hydra.yaml").get("hydra") or {}).get("runtime", {}).get("choices", {}) or {}
    sde, schedule = choices.get("sde"), choices.get("schedule")
    if not sde:
        cfg = _load_yaml(run / ".hydra" / "config.yaml")
        sde_t = str((cfg.get("sde") or {}).get("_target_", "")).rsplit(".", 1)[-1]
        sch_t = str((cfg.get("schedule") or {}).get("_target_", "")).rsplit(".", 1)[-1]
        sde, schedule = sde_t or "model", SCHEDULE_NAMES.get(sch_t, sch_t)
    name = SDE_NAMES.get(sde, sde)
    if name == "VE" or not schedule or schedule == "geometric":
        return name
    return f"{name}-{schedule}"


def find_runs(root: Path) -> list[Path]:
    runs = sorted({p.parent.parent for p in root.rglob(".hydra/config.yaml")})
    runs = [r for r in runs if "report" not in r.relative_to(root).parts]
    skipped = [r for r in runs if skipped_pair(r)]
    if skipped:
        log(f"ignored {len(skipped)} jobs of incompatible SDE × schedule pairs (skipped by the sweep)")
    return [r for r in runs if r not in skipped]


def read_run_metrics(run: Path, top_runs: list) -> dict:
    """metrics.json files of the run and of folders nested in it (e.g. ``sdegen eval ...
    hydra.run.dir=RUN/eval``), skipping other top-level runs nested below it; later files override."""
    out = {}
    for path in sorted(run.rglob("metrics.json")):
        if any(o != run and run in o.parents and o in path.parents for o in top_runs):
            continue
        try:
            out.update(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            log(f"unreadable {path}: skipped")
    return out


def loss_column(df: pd.DataFrame) -> str | None:
    for name in ("train/loss_epoch", "train/loss", "train_loss", "loss"):
        if name in df.columns and df[name].notna().any():
            return name
    cands = [c for c in df.columns if "loss" in c.lower() and "val" not in c.lower() and df[c].notna().any()]
    return cands[0] if cands else None


def training_curve(run: Path) -> pd.DataFrame | None:
    """(step, epoch, loss) rows of the run's CSV log, or None."""
    for path in [run / "csv" / "metrics.csv", *sorted(run.glob("csv/*/metrics.csv"))]:
        if path.is_file():
            try:
                df = pd.read_csv(path)
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                return None
            col = loss_column(df)
            if col is None:
                return None
            df = df[df[col].notna()]
            step = df["step"] if "step" in df.columns else pd.Series(np.arange(len(df)), index=df.index)
            epoch = df["epoch"] if "epoch" in df.columns else pd.Series(np.zeros(len(df)), index=df.index)
            return pd.DataFrame({"step": step.to_numpy(), "epoch": epoch.to_numpy(), "loss": df[col].to_numpy()})
    return None


def train_figures(run: Path) -> dict:
    """``steps`` and ``train_minutes`` of the run's ``train_summary.json`` (``sdegen train``), or {}."""
    path = run / TRAIN_SUMMARY
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        log(f"unreadable {path}: skipped")
        return {}
    out = {}
    if isinstance(summary.get("global_step"), (int, float)):
        out["steps"] = float(summary["global_step"])
    if isinstance(summary.get("seconds"), (int, float)):
        out["train_minutes"] = float(summary["seconds"]) / 60
    return out


def collect(root: Path, keys) -> pd.DataFrame:
    """One row per top-level run: run, config, seed, path and the value of each of ``keys`` (NaN: missing)."""
    runs = find_runs(root)
    rows = []
    # eval folders inside a training run are not runs of their own
    top = [r for r in runs if not any(o != r and o in r.parents and (o / "csv").is_dir() for o in runs)]
    for run in top:
        cfg = _load_yaml(run / ".hydra" / "config.yaml")
        row = {
            "run": str(run.relative_to(root)) if run != root else ".",
            "config": config_label(run),
            "seed": cfg.get("seed"),
            "path": run,
        }
        metrics = read_run_metrics(run, top)
        metrics.update(train_figures(run))
        for key in keys:
            value = metrics.get(key)
            row[key] = float(value) if isinstance(value, (int, float)) and math.isfinite(float(value)) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def config_order(labels) -> list[str]:
    labels = list(dict.fromkeys(labels))
    return [c for c in ORDER if c in labels] + sorted(c for c in labels if c not in ORDER)
