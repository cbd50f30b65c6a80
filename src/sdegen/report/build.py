"""Tables and figures of a run or a sweep (``sdegen report``, ``commands/report.py``).

A run is any folder under ``run_dir`` with ``.hydra/config.yaml``.  Its configuration label comes
from the Hydra choices (``.hydra/hydra.yaml`` runtime.choices, else the config's targets): "VE",
"VP-linear", "VP-cosine", "subVP-linear", "subVP-cosine".  Runs of one label (different seeds)
are replicates.  From each run it reads
  * ``metrics.json`` (from ``sdegen eval``; in the run folder or any subfolder that is not a run),
  * the training log ``csv/metrics.csv`` (Lightning CSVLogger; any column with "loss" in its name,
    ``train/loss`` preferred, against ``step``/``epoch``),
  * figures ``grid.png``, ``evolution.png``, ``compare*.png``.
  * ``train_summary.json`` (written by ``sdegen train`` at the end of a run): steps and wall time,
and writes into ``<run_dir>/report/`` (or ``out_dir=``):
  * ``metrics_table.md`` / ``metrics_table.csv``: per configuration, mean ± std (sample std) over runs
    with N, of the columns of ``TABLE_METRICS`` (thesis Table 4.1): FID and bits/dim always ("—" where
    missing), the others (steps, training minutes, KID, the digit judge's Fréchet distance and IS,
    Inception IS, classifier-space FID/IS) when some run has them; the best mean of each metric in bold;
  * ``differences.md`` / ``differences.csv``: every pair of configurations and metric, with the
    difference of means, its standard error from the seed std pooled over all configurations and
    whether it exceeds 2 standard errors ("larger than the seed spread", ``seed_spread_differences``);
  * ``violin_<metric>.png`` across configurations (Figs. 4.3–4.8);
  * ``loss_curves.png`` and ``loss_bars.png``: final loss and mean loss over the first
    ``first_epochs`` epochs (Figs. 4.13–4.14);
  * ``figures/``: copies of the sample figures, and the last ``samples/step_*.png`` grid of the first
    run of each configuration; ``index.md`` embedding everything.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import UserError

#: columns of the table: key (metrics.json of `sdegen eval`, or train_summary.json) -> column title
TABLE_METRICS = {"steps": "Steps", "train_minutes": "Train (min)",
                 "fid": "FID", "kid_mean": "KID", "judge_frechet": "Fréchet (judge)", "bpd": "Bits/dim",
                 "judge_is": "IS (judge)", "is_mean": "IS (mean)", "is_std": "IS (split std)",
                 # the offline domain metrics in the time-dependent classifier's space (eval.classifier_ckpt)
                 "classifier_fid": "FID (classifier)", "classifier_is_mean": "IS (classifier)"}
ALWAYS_SHOWN = ("fid", "bpd")  # the other columns appear when some run has them
#: the quality metrics compared between configurations: key -> True when lower is better
COMPARED = {"fid": True, "kid_mean": True, "judge_frechet": True, "bpd": True, "judge_is": False, "is_mean": False,
            "classifier_fid": True, "classifier_is_mean": False}
SPREAD_FACTOR = 2.0  # a difference is "larger than the seed spread" when |Δ| > SPREAD_FACTOR · se(Δ)
ORDER = ["VE", "VP-linear", "VP-cosine", "subVP-linear", "subVP-cosine"]
SDE_NAMES = {"ve": "VE", "vp": "VP", "subvp": "subVP", "VESDE": "VE", "VPSDE": "VP", "SubVPSDE": "subVP"}
SCHEDULE_NAMES = {"LinearSchedule": "linear", "CosineSchedule": "cosine", "GeometricSigma": "geometric"}
FIGURE_GLOBS = ("grid.png", "evolution.png", "compare*.png")
TRAIN_SUMMARY = "train_summary.json"
DASH = "—"


def log(msg):
    logging.getLogger("sdegen").info(msg)


# --- finding runs ----------------------------------------------------------------------------------
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
    """"VP-linear" etc. from the Hydra choices of the run (VE has no schedule in its name)."""
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


def run_metrics(run: Path, top_runs: list) -> dict:
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


def collect(root: Path) -> pd.DataFrame:
    runs = find_runs(root)
    rows = []
    # eval folders inside a training run are not runs of their own
    top = [r for r in runs if not any(o != r and o in r.parents and (o / "csv").is_dir() for o in runs)]
    for run in top:
        cfg = _load_yaml(run / ".hydra" / "config.yaml")
        row = {"run": str(run.relative_to(root)) if run != root else ".", "config": config_label(run),
               "seed": cfg.get("seed"), "path": run}
        metrics = run_metrics(run, top)
        metrics.update(train_figures(run))
        for key in TABLE_METRICS:
            value = metrics.get(key)
            row[key] = float(value) if isinstance(value, (int, float)) and math.isfinite(float(value)) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# --- table -----------------------------------------------------------------------------------------
def config_order(labels) -> list[str]:
    labels = list(dict.fromkeys(labels))
    return [c for c in ORDER if c in labels] + sorted(c for c in labels if c not in ORDER)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: <metric>_mean, <metric>_std (sample std, ddof=1), <metric>_n."""
    rows = []
    for label in config_order(runs["config"]):
        group = runs[runs["config"] == label]
        row = {"config": label, "runs": len(group)}
        for key in TABLE_METRICS:
            values = group[key].dropna().to_numpy(dtype=float)
            row[f"{key}_n"] = len(values)
            row[f"{key}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def fmt(mean, std, n, key: str = "") -> str:
    """"mean ± std (N=n)", 2 decimals (3 below 1 in magnitude, 4 below 0.01); "—" when nothing was
    measured.  ``steps``: an integer, without ± when every run has the same; ``train_minutes``: 1 decimal."""
    if not n or not math.isfinite(mean):
        return DASH
    if key == "steps" and (not math.isfinite(std) or std == 0):
        return f"{mean:.0f} (N={n})"
    d = 1 if key in ("steps", "train_minutes") else 2 if abs(mean) >= 1 else 3 if abs(mean) >= 0.01 else 4
    if not math.isfinite(std):
        return f"{mean:.{d}f} (N={n})"
    return f"{mean:.{d}f} ± {std:.{d}f} (N={n})"


def shown_metrics(summary: pd.DataFrame) -> list[str]:
    """``ALWAYS_SHOWN`` and every other column some configuration has a value of, in table order."""
    return [k for k in TABLE_METRICS if k in ALWAYS_SHOWN or (summary[f"{k}_n"] > 0).any()]


def best_config(summary: pd.DataFrame, key: str) -> str | None:
    """The configuration with the best mean of a compared metric (lowest, or highest for IS)."""
    if key not in COMPARED or not summary[f"{key}_mean"].notna().any() or len(summary) < 2:
        return None
    means = summary.set_index("config")[f"{key}_mean"]
    return str(means.idxmin() if COMPARED[key] else means.idxmax())


def markdown_table(summary: pd.DataFrame) -> str:
    keys = shown_metrics(summary)
    best = {k: best_config(summary, k) for k in keys}
    head = "| SDE | " + " | ".join(TABLE_METRICS[k] for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for _, r in summary.iterrows():
        cells = [fmt(r[f"{k}_mean"], r[f"{k}_std"], int(r[f"{k}_n"]), k) for k in keys]
        cells = [f"**{c}**" if best[k] == r["config"] else c for k, c in zip(keys, cells)]
        lines.append(f"| {r['config']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- differences against the seed spread ------------------------------------------------------------
def pooled_seed_std(stds, ns) -> tuple[float, int]:
    """(s, dof): s² = Σ (n_i − 1) s_i² / Σ (n_i − 1) over the configurations with two runs or more (the
    within-group variance of a one-way ANOVA: one seed-to-seed std for every configuration); (NaN, 0)
    when no configuration has a replicate."""
    pairs = [(float(sd), int(n)) for sd, n in zip(stds, ns) if int(n) > 1 and math.isfinite(float(sd))]
    dof = sum(n - 1 for _, n in pairs)
    if dof == 0:
        return float("nan"), 0
    return math.sqrt(sum((n - 1) * sd ** 2 for sd, n in pairs) / dof), dof


def seed_spread_differences(summary: pd.DataFrame, factor: float = SPREAD_FACTOR) -> pd.DataFrame:
    """Every pair of configurations (a before b in table order) and compared metric: the means, Δ = mean_b −
    mean_a, the seed std s of the metric pooled over all configurations (``pooled_seed_std``, with its
    degrees of freedom), the standard error of Δ, se = s·√(1/n_a + 1/n_b), t = |Δ|/se, ``larger`` = t >
    ``factor`` (NaN s: not judged) and ``better`` (the configuration with the better mean).  With two seeds
    each, se = s and the rule reads |mean_a − mean_b| > 2·s.  t is the pooled two-sample t statistic; with
    a few degrees of freedom the factor 2 is a screen for differences that stand out of the seed noise,
    not a significance test."""
    rows = []
    configs = list(summary["config"])
    table = summary.set_index("config")
    for key, lower_better in COMPARED.items():
        s, dof = pooled_seed_std(table[f"{key}_std"], table[f"{key}_n"])
        for i, a in enumerate(configs):
            for b in configs[i + 1:]:
                ra, rb = table.loc[a], table.loc[b]
                n_a, n_b = int(ra[f"{key}_n"]), int(rb[f"{key}_n"])
                if not n_a or not n_b:
                    continue
                mean_a, mean_b = float(ra[f"{key}_mean"]), float(rb[f"{key}_mean"])
                diff = mean_b - mean_a
                se = s * math.sqrt(1 / n_a + 1 / n_b)
                t = abs(diff) / se if se > 0 else (math.inf if diff and math.isfinite(se) else float("nan"))
                better = (a if (mean_a < mean_b) == lower_better else b) if diff else ""
                rows.append({"metric": key, "a": a, "b": b, "mean_a": mean_a, "mean_b": mean_b, "diff": diff,
                             "seed_std": s, "dof": dof, "se": se, "t": t,
                             "larger": bool(math.isfinite(se) and abs(diff) > factor * se), "better": better})
    return pd.DataFrame(rows, columns=["metric", "a", "b", "mean_a", "mean_b", "diff", "seed_std", "dof", "se", "t",
                                       "larger", "better"])


def differences_markdown(diffs: pd.DataFrame, factor: float = SPREAD_FACTOR) -> str:
    """Per metric, the pairs whose difference exceeds ``factor`` standard errors, the better configuration first."""
    lines = [f"A difference counts as larger than the seed spread when t = |mean_a − mean_b| / se > {factor:g}, "
             "se = s·√(1/n_a + 1/n_b) and s the metric's seed-to-seed std pooled over all configurations (two seeds "
             f"each: |Δ| > {factor:g}·s).  With a few degrees of freedom this is a screen, not a significance test. "
             "[All pairs](differences.csv).", ""]
    if diffs.empty or not diffs["seed_std"].notna().any():
        return "\n".join(lines + [f"{DASH} (no configuration has two runs: no seed spread to compare with)"]) + "\n"
    for key in COMPARED:
        rows = diffs[diffs["metric"] == key]
        if rows.empty:
            continue
        judged = rows[rows["se"].notna()]
        big = judged[judged["larger"]].sort_values("t", ascending=False)
        pairs = []
        for _, r in big.iterrows():
            worse = r["b"] if r["better"] == r["a"] else r["a"]
            verb = "<" if COMPARED[key] else ">"
            t = "∞" if not math.isfinite(r["t"]) else f"{r['t']:.1f}"
            pairs.append(f"{r['better']} {verb} {worse} (|Δ| = {abs(r['diff']):.3g}, t = {t})")
        head = f"- **{TABLE_METRICS[key]}** ({'lower' if COMPARED[key] else 'higher'} is better"
        if len(judged):
            head += f"; seed std {judged['seed_std'].iloc[0]:.3g}, {int(judged['dof'].iloc[0])} dof): "
        else:
            head += "): "
        if not len(judged):
            lines.append(head + f"{DASH} (no replicates)")
        elif pairs:
            lines.append(head + f"{len(pairs)} of {len(judged)} pairs: " + "; ".join(pairs))
        else:
            lines.append(head + f"none of {len(judged)} pairs")
    return "\n".join(lines) + "\n"


# --- figures ---------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def violin(runs: pd.DataFrame, key: str, path: Path) -> bool:
    labels = [c for c in config_order(runs["config"]) if runs.loc[runs["config"] == c, key].notna().any()]
    if not labels:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 3.6))
    data = [runs.loc[runs["config"] == c, key].dropna().to_numpy(float) for c in labels]
    spread = [i for i, d in enumerate(data) if len(d) > 1 and d.std() > 0]
    if spread:
        parts = ax.violinplot([data[i] for i in spread], positions=spread, showmeans=True)
        for body in parts["bodies"]:
            body.set_alpha(0.4)
    for i, d in enumerate(data):
        ax.scatter(np.full(len(d), i), d, s=14, color="k", zorder=3)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(TABLE_METRICS[key])
    ax.set_title(f"{TABLE_METRICS[key]} across SDE configurations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def loss_figures(runs: pd.DataFrame, out: Path, first_epochs: int) -> list[str]:
    curves = {}
    for _, r in runs.iterrows():
        curve = training_curve(r["path"])
        if curve is not None and len(curve):
            curves.setdefault(r["config"], []).append(curve)
    if not curves:
        return []
    plt = _plt()
    labels = config_order(curves)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label in labels:
        merged = pd.concat(curves[label]).groupby("step")["loss"].mean()
        ax.plot(merged.index, merged.to_numpy(), label=f"{label} (N={len(curves[label])})")
    ax.set_xlabel("step"), ax.set_ylabel("training loss"), ax.set_yscale("log"), ax.legend()
    ax.set_title("Training loss (mean over runs)")
    fig.tight_layout(), fig.savefig(out / "loss_curves.png", dpi=110), plt.close(fig)

    final = {lab: [c["loss"].iloc[-1] for c in curves[lab]] for lab in labels}
    early = {lab: [c.loc[c["epoch"] < first_epochs, "loss"].mean() for c in curves[lab]] for lab in labels}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, values, title in ((axes[0], final, "final training loss"),
                              (axes[1], early, f"mean loss over the first {first_epochs} epochs")):
        means = [np.nanmean(values[lab]) for lab in labels]
        stds = [np.nanstd(values[lab], ddof=1) if len(values[lab]) > 1 else 0.0 for lab in labels]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.7)
        ax.set_xticks(range(len(labels)), labels, rotation=20), ax.set_title(title)
    fig.tight_layout(), fig.savefig(out / "loss_bars.png", dpi=110), plt.close(fig)
    pd.DataFrame({"config": labels, "final_loss_mean": [np.nanmean(final[lab]) for lab in labels],
                  f"mean_loss_first_{first_epochs}_epochs": [np.nanmean(early[lab]) for lab in labels]}
                 ).to_csv(out / "loss_summary.csv", index=False)
    return ["loss_curves.png", "loss_bars.png"]


def copy_figures(runs: pd.DataFrame, out: Path) -> list[tuple[str, str]]:
    copied = []
    (out / "figures").mkdir(exist_ok=True)
    for _, r in runs.iterrows():
        for pattern in FIGURE_GLOBS:
            for src in sorted(Path(r["path"]).rglob(pattern)):
                if "report" in src.relative_to(r["path"]).parts:
                    continue
                name = f"{r['config']}_{Path(r['run']).name}_{src.name}".replace("/", "_")
                shutil.copy2(src, out / "figures" / name)
                copied.append((f"{r['config']} ({r['run']}): {src.name}", f"figures/{name}"))
    for label in config_order(runs["config"]):  # the training run's last sample grid, first run of each config
        first = runs[runs["config"] == label].iloc[0]
        grids = sorted(Path(first["path"]).glob("samples/step_*.png"))
        if grids:
            name = f"{label}_{Path(first['run']).name}_samples_final.png".replace("/", "_")
            shutil.copy2(grids[-1], out / "figures" / name)
            copied.append((f"{label} ({first['run']}): {grids[-1].name} (training samples, EMA weights)",
                           f"figures/{name}"))
    return copied


# --- the command -----------------------------------------------------------------------------------
def build_report(run_dir, out_dir=None, first_epochs: int = 10) -> Path:
    root = Path(run_dir).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"run_dir={run_dir} is not a folder")
    runs = collect(root)
    if runs.empty:
        raise UserError(f"no runs (folders with .hydra/config.yaml) under {root}; give a `sdegen train` run or "
                        f"multirun folder")
    out = Path(out_dir).expanduser().resolve() if out_dir else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    log(f"{len(runs)} runs in {runs['config'].nunique()} configurations under {root}")

    summary = summary_table(runs)
    summary.to_csv(out / "metrics_table.csv", index=False)
    table = markdown_table(summary)
    (out / "metrics_table.md").write_text(table)
    runs.drop(columns=["path"]).to_csv(out / "runs.csv", index=False)

    diffs = seed_spread_differences(summary)
    diffs.to_csv(out / "differences.csv", index=False)
    differences = differences_markdown(diffs)
    (out / "differences.md").write_text(differences)

    violins = [f"violin_{k}.png" for k in TABLE_METRICS
               if k not in ("steps", "train_minutes") and violin(runs, k, out / f"violin_{k}.png")]
    losses = loss_figures(runs, out, first_epochs)
    figures = copy_figures(runs, out)

    lines = [f"# Report: {root.name}", "", f"{len(runs)} runs, {runs['config'].nunique()} SDE configurations. "
             "Values are mean ± std over runs (sample std) with the number of runs N; "
             f"{DASH} = not measured. Lower is better for FID, KID, the Fréchet distances and bits/dim, higher "
             "for IS; the best mean of each metric is in bold.", "",
             "## Metrics (thesis Table 4.1)", "", table, "[CSV](metrics_table.csv) · [all runs](runs.csv)", "",
             "## Differences larger than the seed spread", "", differences]
    if violins:
        lines += ["## Distributions across configurations", ""]
        lines += [f"![{v}]({v})" for v in violins] + [""]
    if losses:
        lines += ["## Training loss", "", *[f"![{f}]({f})" for f in losses], "", "[loss summary](loss_summary.csv)", ""]
    else:
        lines += ["## Training loss", "", f"{DASH} (no csv/metrics.csv with a loss column found)", ""]
    if figures:
        lines += ["## Samples", ""] + [f"**{title}**\n\n![{title}]({path})\n" for title, path in figures]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {out / 'index.md'}")
    return out

