"""The report's figures: ``violin_<metric>.png`` across configurations (Figs. 4.3–4.8), ``loss_curves.png``
and ``loss_bars.png`` (final loss and mean loss over the first epochs, Figs. 4.13–4.14, with
``loss_summary.csv``), and ``figures/``: copies of each run's sample figures and the last training sample
grid of the first run of each configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import config_order, training_curve
from .tables import TABLE_METRICS

FIGURE_GLOBS = ("grid.png", "evolution.png", "compare*.png")


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
    for ax, values, title in (
        (axes[0], final, "final training loss"),
        (axes[1], early, f"mean loss over the first {first_epochs} epochs"),
    ):
        means = [np.nanmean(values[lab]) for lab in labels]
        stds = [np.nanstd(values[lab], ddof=1) if len(values[lab]) > 1 else 0.0 for lab in labels]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.7)
        ax.set_xticks(range(len(labels)), labels, rotation=20), ax.set_title(title)
    fig.tight_layout(), fig.savefig(out / "loss_bars.png", dpi=110), plt.close(fig)
    pd.DataFrame(
        {
            "config": labels,
            "final_loss_mean": [np.nanmean(final[lab]) for lab in labels],
            f"mean_loss_first_{first_epochs}_epochs": [np.nanmean(early[lab]) for lab in labels],
        }
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
            copied.append(
                (f"{label} ({first['run']}): {grids[-1].name} (training samples, EMA weights)", f"figures/{name}")
            )
    return copied
