"""``sdegen report``: the tables and figures of a run or a sweep, written into ``<run_dir>/report/`` (or
``out_dir=``) with an ``index.md`` that embeds them: runs from ``runs``, tables from ``tables``, figures
from ``figures``."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .figures import copy_figures, loss_figures, violin
from .runs import collect, log
from .tables import DASH, TABLE_METRICS, differences_markdown, markdown_table, seed_spread_differences, summary_table


def build_report(run_dir, out_dir=None, first_epochs: int = 10) -> Path:
    root = Path(run_dir).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"run_dir={run_dir} is not a folder")
    runs = collect(root, TABLE_METRICS)
    if runs.empty:
        raise UserError(
            f"no runs (folders with .hydra/config.yaml) under {root}; give a `sdegen train` run or multirun folder"
        )
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

    violins = [
        f"violin_{k}.png"
        for k in TABLE_METRICS
        if k not in ("steps", "train_minutes") and violin(runs, k, out / f"violin_{k}.png")
    ]
    losses = loss_figures(runs, out, first_epochs)
    figures = copy_figures(runs, out)

    lines = [
        f"# Report: {root.name}",
        "",
        f"{len(runs)} runs, {runs['config'].nunique()} SDE configurations. "
        "Values are mean ± std over runs (sample std) with the number of runs N; "
        f"{DASH} = not measured. Lower is better for FID, KID, the Fréchet distances and bits/dim, higher "
        "for IS; the best mean of each metric is in bold.",
        "",
        "## Metrics (thesis Table 4.1)",
        "",
        table,
        "[CSV](metrics_table.csv) · [all runs](runs.csv)",
        "",
        "## Differences larger than the seed spread",
        "",
        differences,
    ]
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
