"""`sdegen report` on a fake multirun: 5 SDE configurations × 2 seeds."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from sdegen import cli
from sdegen.report.build import build_report
from sdegen.report.runs import config_label
from sdegen.report.tables import differences_markdown, markdown_table, pooled_seed_std, seed_spread_differences

CONFIGS = [
    ("ve", "geometric", "VE"),
    ("vp", "linear", "VP-linear"),
    ("vp", "cosine", "VP-cosine"),
    ("subvp", "linear", "subVP-linear"),
    ("subvp", "cosine", "subVP-cosine"),
]
TARGETS = {"ve": "sdegen.sde.VESDE", "vp": "sdegen.sde.VPSDE", "subvp": "sdegen.sde.SubVPSDE"}


def metrics_of(i, seed):
    return {
        "fid": 100.0 + 10 * i + 3 * seed,
        "bpd": 2.0 + i + 0.5 * seed,
        "is_mean": 3.0 + 0.1 * seed,
        "is_std": 0.2 + 0.1 * i,
    }


def make_multirun(root, with_metrics=True, png=None):
    job = 0
    for i, (sde, schedule, _) in enumerate(CONFIGS):
        for seed in (0, 1):
            run = root / f"{job}_sde={sde},schedule={schedule}"
            (run / ".hydra").mkdir(parents=True)
            (run / ".hydra" / "config.yaml").write_text(
                yaml.safe_dump({"seed": seed, "sde": {"_target_": TARGETS[sde]}, "schedule": {"_target_": "x"}})
            )
            (run / ".hydra" / "hydra.yaml").write_text(
                yaml.safe_dump({"hydra": {"runtime": {"choices": {"sde": sde, "schedule": schedule}}}})
            )
            (run / "csv").mkdir()
            steps = np.arange(40)
            pd.DataFrame(
                {
                    "epoch": steps // 4,
                    "step": steps,
                    "lr": 1e-3,
                    "train/loss": (1 + i) * np.exp(-steps / 20) + 0.01 * seed,
                    "val/loss": np.nan,
                }
            ).to_csv(run / "csv" / "metrics.csv", index=False)
            if with_metrics and not (sde == "ve" and seed == 1):  # one VE run lacks metrics
                m = metrics_of(i, seed)
                if sde == "vp" and schedule == "cosine":
                    m.pop("bpd")  # a metric never measured for this configuration
                (run / "eval").mkdir()
                (run / "eval" / "metrics.json").write_text(json.dumps(m))
            (run / "train_summary.json").write_text(json.dumps({"global_step": 40, "seconds": 60.0 + 6 * seed}))
            if png is not None and job == 0:
                (run / "grid.png").write_bytes(png)
                (run / "evolution.png").write_bytes(png)
            job += 1


@pytest.fixture
def png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    path = tmp_path / "x.png"
    fig.savefig(path)
    plt.close(fig)
    return path.read_bytes()


def test_report_table_and_figures(tmp_path, png):
    root = tmp_path / "multirun"
    make_multirun(root, png=png)
    out = build_report(root, first_epochs=3)
    table = pd.read_csv(out / "metrics_table.csv").set_index("config")
    assert list(table.index) == [c[2] for c in CONFIGS]
    for i, (_, _, label) in enumerate(CONFIGS):
        seeds = [0] if label == "VE" else [0, 1]
        for key in ("fid", "is_mean", "is_std", "bpd"):
            if label == "VP-cosine" and key == "bpd":
                assert table.loc[label, "bpd_n"] == 0 and np.isnan(table.loc[label, "bpd_mean"])
                continue
            values = np.array([metrics_of(i, s)[key] for s in seeds])
            assert table.loc[label, f"{key}_n"] == len(values)
            assert table.loc[label, f"{key}_mean"] == pytest.approx(values.mean())
            if len(values) > 1:
                assert table.loc[label, f"{key}_std"] == pytest.approx(values.std(ddof=1))
    md = (out / "metrics_table.md").read_text()
    # VP-linear FID: 110 and 113 -> 111.50 ± 2.12 (N=2)
    assert "111.50 ± 2.12 (N=2)" in md
    assert "| VP-cosine |" in md and "—" in md.split("| VP-cosine |")[1].split("\n")[0]
    assert "100.00 (N=1)" in md  # VE: a single run with metrics
    # steps and minutes from train_summary.json: 40 steps each, 1.0 and 1.1 min
    assert table.loc["VP-linear", "steps_mean"] == 40
    assert table.loc["VP-linear", "train_minutes_mean"] == pytest.approx(1.05)
    assert "| Steps | Train (min) | FID |" in md and "| 40 (N=2) | 1.1 ± 0.1 (N=2) |" in md
    assert "KID" not in md  # no run has it: the column is left out
    # the best FID (lowest: VE's 100) in bold
    assert "**100.00 (N=1)**" in md
    for name in (
        "violin_fid.png",
        "violin_bpd.png",
        "violin_is_mean.png",
        "violin_is_std.png",
        "loss_curves.png",
        "loss_bars.png",
        "index.md",
        "differences.md",
        "differences.csv",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "violin_steps.png").exists() and not (out / "violin_train_minutes.png").exists()
    index = (out / "index.md").read_text()
    assert "![violin_fid.png](violin_fid.png)" in index and "loss_bars.png" in index
    assert "figures/VE_0_sde=ve,schedule=geometric_grid.png" in index
    assert (out / "figures" / "VE_0_sde=ve,schedule=geometric_evolution.png").is_file()
    loss = pd.read_csv(out / "loss_summary.csv").set_index("config")
    expected = np.mean([np.exp(-np.arange(12) / 20).mean() * 2 + 0.01 * s for s in (0, 1)])  # VP-linear: i=1
    assert loss.loc["VP-linear", "mean_loss_first_3_epochs"] == pytest.approx(expected)


def test_report_without_metrics_or_logs_does_not_crash(tmp_path):
    root = tmp_path / "bare"
    make_multirun(root, with_metrics=False)
    for run in root.iterdir():
        (run / "csv" / "metrics.csv").unlink()
    out = build_report(root)
    md = (out / "metrics_table.md").read_text()
    assert md.count("—") == 2 * len(CONFIGS)  # FID and bits/dim are always there
    assert (out / "index.md").is_file() and not (out / "violin_fid.png").exists()


def test_report_cli_positional_dir(tmp_path, png, monkeypatch):
    root = tmp_path / "multirun"
    make_multirun(root)
    monkeypatch.chdir(tmp_path)
    cli.main(["sdegen", "report", str(root)])
    assert (root / "report" / "index.md").is_file() and (root / "report" / "cli.log").is_file()
    assert not (tmp_path / "outputs").exists()  # nothing in the current directory
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no runs"):
        build_report(tmp_path / "empty")


def test_config_label_from_config_targets(tmp_path):
    run = tmp_path / "r"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump(
            {"sde": {"_target_": "sdegen.sde.SubVPSDE"}, "schedule": {"_target_": "sdegen.sde.CosineSchedule"}}
        )
    )
    assert config_label(run) == "subVP-cosine"


def synthetic_summary(rows):
    """A summary table (as ``summary_table`` returns) from (config, [fid values], [judge_is values])."""
    out = []
    for config, fid, jis in rows:
        row = {"config": config, "runs": len(fid)}
        for key, values in (("fid", fid), ("judge_is", jis)):
            v = np.asarray(values, float)
            row.update(
                {
                    f"{key}_n": len(v),
                    f"{key}_mean": v.mean() if len(v) else np.nan,
                    f"{key}_std": v.std(ddof=1) if len(v) > 1 else np.nan,
                }
            )
        out.append(row)
    summary = pd.DataFrame(out)
    for key in (
        "steps",
        "train_minutes",
        "kid_mean",
        "judge_frechet",
        "bpd",
        "is_mean",
        "is_std",
        "classifier_fid",
        "classifier_is_mean",
    ):
        summary[f"{key}_n"], summary[f"{key}_mean"], summary[f"{key}_std"] = 0, np.nan, np.nan
    return summary


def test_differences_against_the_seed_spread_on_a_synthetic_table():
    """FID A = {10, 12} (s² = 2), B = {20, 22} (s² = 2), C = {11, 15} (s² = 8), D = {40} (one run): the
    pooled seed variance is (2 + 2 + 8)/3 = 4, s = 2 with 3 dof; se(A, B) = 2·√(1/2 + 1/2) = 2, Δ = 10,
    t = 5 (larger); A-C: t = 1 (not); B-C: t = 4, C better; A-D: se = 2·√(1.5), t = 29/2.449 = 11.8.
    IS (higher is better): A = {5, 5}, B = {4, 4}: s = 0, Δ ≠ 0 -> t = ∞, larger; C has no IS."""
    assert pooled_seed_std([math.sqrt(2), math.sqrt(2), math.sqrt(8), np.nan], [2, 2, 2, 1]) == (pytest.approx(2.0), 3)
    assert pooled_seed_std([1.0, 3.0], [4, 2]) == (pytest.approx(math.sqrt((3 * 1 + 1 * 9) / 4)), 4)
    s, dof = pooled_seed_std([np.nan, np.nan], [1, 1])
    assert math.isnan(s) and dof == 0
    summary = synthetic_summary(
        [("A", [10, 12], [5, 5]), ("B", [20, 22], [4, 4]), ("C", [11, 15], []), ("D", [40], [6])]
    )
    d = seed_spread_differences(summary).set_index(["metric", "a", "b"])
    ab, ac, ad, bc = (d.loc[("fid", *pair)] for pair in (("A", "B"), ("A", "C"), ("A", "D"), ("B", "C")))
    assert ab["diff"] == pytest.approx(10) and ab["seed_std"] == pytest.approx(2) and ab["dof"] == 3
    assert ab["se"] == pytest.approx(2) and ab["t"] == pytest.approx(5) and ab["larger"] and ab["better"] == "A"
    assert ac["t"] == pytest.approx(1) and not ac["larger"] and ac["better"] == "A"
    assert bc["diff"] == pytest.approx(-8) and bc["t"] == pytest.approx(4) and bc["larger"] and bc["better"] == "C"
    assert ad["se"] == pytest.approx(2 * math.sqrt(1.5)) and ad["t"] == pytest.approx(29 / (2 * math.sqrt(1.5)))
    jis = d.loc[("judge_is", "A", "B")]
    assert jis["seed_std"] == 0 and jis["larger"] and jis["better"] == "A" and math.isinf(jis["t"])
    assert ("judge_is", "A", "C") not in d.index
    # factor 4.5: B-C (t = 4) drops, A-B (t = 5) and every pair with D stay
    assert set(
        seed_spread_differences(summary, factor=4.5)
        .query("metric == 'fid' and larger")[["a", "b"]]
        .itertuples(index=False, name=None)
    ) == {("A", "B"), ("A", "D"), ("B", "D"), ("C", "D")}
    text = differences_markdown(seed_spread_differences(summary))
    fid_line = next(line for line in text.splitlines() if line.startswith("- **FID**"))
    assert "seed std 2, 3 dof" in fid_line and "5 of 6 pairs" in fid_line
    assert "A < B (|Δ| = 10, t = 5.0)" in fid_line and "C < B (|Δ| = 8, t = 4.0)" in fid_line
    assert "A < C" not in fid_line
    assert "A > B (|Δ| = 1, t = ∞)" in text
    # no replicates anywhere: nothing is judged
    single = synthetic_summary([("A", [10], [5]), ("B", [20], [4])])
    assert not seed_spread_differences(single)["larger"].any()
    assert "no seed spread" in differences_markdown(seed_spread_differences(single))
    md = markdown_table(summary)
    assert "**11.00 ± 1.41 (N=2)**" in md and "**6.00 (N=1)**" in md  # best FID (A), best IS (D)
