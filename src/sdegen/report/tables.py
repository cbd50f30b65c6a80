"""The report's tables: per configuration, mean ± std over runs (thesis Table 4.1), and the differences
between configurations that are larger than the seed spread.

* ``metrics_table.md`` / ``.csv``: the columns of ``TABLE_METRICS``: FID and bits/dim always ("—" where
  missing), the others (steps, training minutes, KID, the digit judge's Fréchet distance and IS, Inception
  IS, classifier-space FID/IS) when some run has them; the best mean of each metric in bold;
* ``differences.md`` / ``.csv``: every pair of configurations and metric, with the difference of means,
  its standard error from the seed std pooled over all configurations and whether it exceeds 2 standard
  errors (``seed_spread_differences``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .runs import config_order

#: columns of the table: key (metrics.json of `sdegen eval`, or train_summary.json) -> column title
TABLE_METRICS = {
    "steps": "Steps",
    "train_minutes": "Train (min)",
    "fid": "FID",
    "kid_mean": "KID",
    "judge_frechet": "Fréchet (judge)",
    "bpd": "Bits/dim",
    "judge_is": "IS (judge)",
    "is_mean": "IS (mean)",
    "is_std": "IS (split std)",
    # the offline domain metrics in the time-dependent classifier's space (eval.classifier_ckpt)
    "classifier_fid": "FID (classifier)",
    "classifier_is_mean": "IS (classifier)",
}
ALWAYS_SHOWN = ("fid", "bpd")  # the other columns appear when some run has them
#: the quality metrics compared between configurations: key -> True when lower is better
COMPARED = {
    "fid": True,
    "kid_mean": True,
    "judge_frechet": True,
    "bpd": True,
    "judge_is": False,
    "is_mean": False,
    "classifier_fid": True,
    "classifier_is_mean": False,
}
SPREAD_FACTOR = 2.0  # a difference is "larger than the seed spread" when |Δ| > SPREAD_FACTOR · se(Δ)
DASH = "—"


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
    """ "mean ± std (N=n)", 2 decimals (3 below 1 in magnitude, 4 below 0.01); "—" when nothing was
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
    return math.sqrt(sum((n - 1) * sd**2 for sd, n in pairs) / dof), dof


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
            for b in configs[i + 1 :]:
                ra, rb = table.loc[a], table.loc[b]
                n_a, n_b = int(ra[f"{key}_n"]), int(rb[f"{key}_n"])
                if not n_a or not n_b:
                    continue
                mean_a, mean_b = float(ra[f"{key}_mean"]), float(rb[f"{key}_mean"])
                diff = mean_b - mean_a
                se = s * math.sqrt(1 / n_a + 1 / n_b)
                t = abs(diff) / se if se > 0 else (math.inf if diff and math.isfinite(se) else float("nan"))
                better = (a if (mean_a < mean_b) == lower_better else b) if diff else ""
                rows.append(
                    {
                        "metric": key,
                        "a": a,
                        "b": b,
                        "mean_a": mean_a,
                        "mean_b": mean_b,
                        "diff": diff,
                        "seed_std": s,
                        "dof": dof,
                        "se": se,
                        "t": t,
                        "larger": bool(math.isfinite(se) and abs(diff) > factor * se),
                        "better": better,
                    }
                )
    return pd.DataFrame(
        rows, columns=["metric", "a", "b", "mean_a", "mean_b", "diff", "seed_std", "dof", "se", "t", "larger", "better"]
    )


def differences_markdown(diffs: pd.DataFrame, factor: float = SPREAD_FACTOR) -> str:
    """Per metric, the pairs whose difference exceeds ``factor`` standard errors, the better configuration first."""
    lines = [
        f"A difference counts as larger than the seed spread when t = |mean_a − mean_b| / se > {factor:g}, "
        "se = s·√(1/n_a + 1/n_b) and s the metric's seed-to-seed std pooled over all configurations (two seeds "
        f"each: |Δ| > {factor:g}·s).  With a few degrees of freedom this is a screen, not a significance test. "
        "[All pairs](differences.csv).",
        "",
    ]
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
