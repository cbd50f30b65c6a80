"""`sdegen eval` end to end on the Gaussian-mixture test bed (in-process Hydra runs)."""

import json

import numpy as np
import pytest
import torch

from sdegen import cli
from sdegen.data.gmm import GMMDataModule


def run_eval(tmp_path, *overrides):
    run_dir = tmp_path / "run"
    cli.main(["sdegen", "eval", "model=gmm", "data=gmm", f"hydra.run.dir={run_dir}",
              f"eval.cache_dir={tmp_path / 'cache'}", *overrides])
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_eval_bpd_on_the_test_bed(tmp_path):
    run_dir, m = run_eval(tmp_path, "metric=bpd", "eval.bpd.n_points=100", "sde=subvp", "schedule=cosine")
    assert abs(m["bpd"] - m["bpd_exact"]) < 0.005 and m["bpd_n"] == 100 and m["bpd_nfe"] > 10
    per = np.load(run_dir / "bpd_per_sample.npz")
    assert per["bpd"].shape == (100,) and per["x"].shape == (100, 1, 4, 4)
    assert per["bpd"].mean() == pytest.approx(m["bpd"])
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert "eval/bpd" in (run_dir / "csv" / "metrics.csv").read_text()


def test_eval_fid_is_of_a_samples_file(tmp_path):
    """Exact samples: raw-feature FID near 0 (reference cached), IS from the exact class posterior."""
    data = GMMDataModule()
    x, _ = data.mixture.sample(1000, generator=torch.Generator().manual_seed(3))
    np.savez(tmp_path / "samples.npz", x=x.numpy())
    _, m = run_eval(tmp_path, f"samples={tmp_path / 'samples.npz'}", "metric=[fid,is]", "eval.ref_size=2000")
    assert m["features"] == "raw" and m["n_samples"] == 1000 and "bpd" not in m
    assert m["fid"] < 0.05
    # IS of exact samples = exp(I(x; y)) ≤ K, close to K for well-separated components
    assert 2.5 < m["is_mean"] <= data.num_classes
    assert list((tmp_path / "cache").glob("GMMDataModule_test_2000_raw_*.pt"))
    # a collapsed sample set (all points at one mean) is far away
    np.savez(tmp_path / "samples.npz", x=np.repeat(x[:1].numpy(), 1000, 0) * 0 + data.mixture.means[0].reshape(1, 1, 4, 4).numpy())
    _, bad = run_eval(tmp_path, f"samples={tmp_path / 'samples.npz'}", "metric=fid", "eval.ref_size=2000")
    assert bad["fid"] > 1.0


def test_eval_generates_with_the_sampler(tmp_path):
    run_dir, m = run_eval(tmp_path, "metric=fid", "n_samples=300", "sampler.steps=100", "eval.ref_size=1000")
    assert m["sampler_nfe"] > 100 and m["n_samples"] == 300
    assert m["fid"] < 0.3
    assert np.load(run_dir / "samples.npz")["x"].shape == (300, 1, 4, 4)


def test_bad_metric_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        run_eval(tmp_path, "metric=fud")
    assert err.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "sdegen: error: metric=fud is not known; use fid, kid, pr, is, bpd or all"]
    assert not (tmp_path / "run").exists()


def test_eval_of_a_sample_run_uses_its_data_config(tmp_path):
    """`samples=` of any `sdegen sample` run: the data config comes from that run's config.yaml (here a
    2×2 mixture, which eval's own default data=gmm (4×4) would refuse), and guided samples are refused."""
    sample_dir = tmp_path / "sample"
    cli.main(["sdegen", "sample", "model=gmm", "data=gmm", "data.shape=[1,2,2]", "n_samples=400",
              "sampler=dpm_solver", "progress=false", f"hydra.run.dir={sample_dir}"])
    run_dir = tmp_path / "eval"
    cli.main(["sdegen", "eval", f"samples={sample_dir / 'samples.npz'}", "metric=fid", "eval.ref_size=1000",
              f"eval.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"])
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n_samples"] == 400 and m["features"] == "raw"
    assert m["fid"] < 0.05  # DPM-Solver samples of the exact score vs the same 2x2 mixture's test points
