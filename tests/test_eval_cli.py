"""`sdegen eval` end to end on the Gaussian-mixture test bed (in-process Hydra runs)."""

import json

import numpy as np
import pytest
import torch

from sdegen import cli
from sdegen.data.gmm import GMMDataModule
from sdegen.runtime import samples_file


def run_eval(tmp_path, *overrides):
    run_dir = tmp_path / "run"
    cli.main(
        [
            "sdegen",
            "eval",
            "model=gmm",
            "data=gmm",
            f"hydra.run.dir={run_dir}",
            f"eval.cache_dir={tmp_path / 'cache'}",
            *overrides,
        ]
    )
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
    # KID comes with FID from the same features; it is not checked here, so 10 subsets instead of 100
    _, m = run_eval(
        tmp_path, f"samples={tmp_path / 'samples.npz'}", "metric=[fid,is]", "eval.ref_size=2000", "eval.kid_subsets=10"
    )
    assert m["features"] == "raw" and m["n_samples"] == 1000 and "bpd" not in m
    assert m["fid"] < 0.05
    # IS of exact samples = exp(I(x; y)) ≤ K, close to K for well-separated components
    assert 2.5 < m["is_mean"] <= data.num_classes
    assert list((tmp_path / "cache").glob("GMMDataModule_test_2000_raw_*.pt"))
    # exact samples: log-likelihood gap 0 within 4 SE; over-dispersed samples (deviations × 1.1 about their
    # component means) give the closed form −(1.1² − 1)/2 = −0.105 nats/dim
    assert abs(m["gap"]) < 4 * m["gap_se"] and 0 < m["gap_se"] < 0.02
    means = data.mixture.means[data.mixture.component_log_probs(x).argmax(1)].reshape(x.shape)
    np.savez(tmp_path / "wide.npz", x=(means + 1.1 * (x - means)).numpy())
    _, wide = run_eval(
        tmp_path, f"samples={tmp_path / 'wide.npz'}", "metric=fid", "eval.ref_size=2000", "eval.kid_subsets=10"
    )
    assert wide["gap"] == pytest.approx(-0.105, abs=4 * wide["gap_se"] + 0.01)
    # a collapsed sample set (all points at one mean) is far away
    collapsed = np.repeat(data.mixture.means[0].reshape(1, 1, 4, 4).numpy(), 1000, 0)
    np.savez(tmp_path / "samples.npz", x=collapsed)
    _, bad = run_eval(
        tmp_path, f"samples={tmp_path / 'samples.npz'}", "metric=fid", "eval.ref_size=2000", "eval.kid_subsets=10"
    )
    assert bad["fid"] > 1.0


def test_eval_generates_with_the_sampler(tmp_path):
    run_dir, m = run_eval(tmp_path, "metric=fid", "n_samples=300", "sampler.steps=100", "eval.ref_size=1000")
    assert m["nfe"] > 100 and m["n_samples"] == 300 and m["metric"] == "fid,kid,pr,gap"  # the test bed adds the gap
    assert m["fid"] < 0.3
    assert samples_file.read_samples(run_dir / "samples.npz")["x"].shape == (300, 1, 4, 4)


def test_bad_metric_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        run_eval(tmp_path, "metric=fud")
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdegen: error: metric") and "fud" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_eval_of_a_sample_run_uses_its_data_config(tmp_path):
    """`samples=` of any `sdegen sample` run: the data config comes from that run's config.yaml (here a
    2×2 mixture, which eval's own default data=gmm (4×4) would refuse), and guided samples are refused."""
    sample_dir = tmp_path / "sample"
    cli.main(
        [
            "sdegen",
            "sample",
            "model=gmm",
            "data=gmm",
            "data.shape=[1,2,2]",
            "n_samples=400",
            "sampler=dpm_solver",
            "progress=false",
            f"hydra.run.dir={sample_dir}",
        ]
    )
    run_dir = tmp_path / "eval"
    cli.main(
        [
            "sdegen",
            "eval",
            f"samples={sample_dir / 'samples.npz'}",
            "metric=fid",
            "eval.ref_size=1000",
            f"eval.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}",
        ]
    )
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n_samples"] == 400 and m["features"] == "raw"
    assert m["fid"] < 0.05  # DPM-Solver samples of the exact score vs the same 2x2 mixture's test points


# --- KID, precision/recall, the offline Inception, fail-fast prerequisites, bpd_se ----------
def make_checkpoint(folder, overrides, kind="score"):
    """An (untrained) checkpoint in the format of `sdegen train`: cheap, and enough to test the wiring."""
    import hydra.utils
    from hydra import compose, initialize_config_dir

    from sdegen.runtime.config import build_sde, config_dir, to_plain
    from sdegen.training.classifier import ClassifierModule
    from sdegen.training.module import ScoreModule, data_info

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        c = compose("train", overrides=overrides)
    data = hydra.utils.instantiate(c.data)
    module = (ScoreModule if kind == "score" else ClassifierModule)(c, build_sde(c), data)
    with torch.no_grad():  # off the zero-initialised output layer: a score whose divergence depends on the probe
        g = torch.Generator().manual_seed(0)
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "global_step": 3,
            "sdegen": {"cfg": to_plain(c), "data": data_info(data), "kind": kind},
        },
        folder / "checkpoints" / "last.ckpt",
    )
    return folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny MNIST (embedded) score checkpoint, and a feature cache shared by this module's tests."""
    d = tmp_path_factory.mktemp("image_run")
    return make_checkpoint(d / "score", ["debug=fast", "data.limit=16"]), d / "cache"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No torch-fidelity weights in torch hub's cache: the run must fall back to the installed TorchScript."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def eval_images(tmp_path, ckpt, cache, *overrides):
    run_dir = tmp_path / "run"
    cli.main(
        [
            "sdegen",
            "eval",
            f"ckpt={ckpt}",
            f"hydra.run.dir={run_dir}",
            f"eval.cache_dir={cache}",
            "progress=false",
            *overrides,
        ]
    )
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_kid_and_precision_recall_on_the_test_bed(tmp_path):
    """Exact samples of the mixture: KID is 0 within its subset std, precision/recall high; a shifted set
    (0.3 per coordinate) has KID many stds above 0 and leaves the reference manifold."""
    data = GMMDataModule()
    x, _ = data.mixture.sample(600, generator=torch.Generator().manual_seed(3))
    np.savez(tmp_path / "samples.npz", x=x.numpy())
    _, m = run_eval(tmp_path, f"samples={tmp_path / 'samples.npz'}", "metric=kid", "eval.ref_size=2000")
    assert m["feature_network"] == {"network": "raw coordinates (model space)"}
    assert "GMMDataModule 'test'" in m["reference"]
    assert {"fid", "kid_mean", "kid_std", "precision", "recall"} <= set(m) and "is_mean" not in m
    assert m["kid_subset_size"] == 600 and m["n_reference"] == 2000
    assert abs(m["kid_mean"]) < 3 * m["kid_std"] and m["fid"] < 0.1
    assert m["precision"] > 0.8 and m["recall"] > 0.8
    np.savez(tmp_path / "samples.npz", x=(x + 0.3).numpy())
    _, far = run_eval(tmp_path, f"samples={tmp_path / 'samples.npz'}", "metric=pr", "eval.ref_size=2000")
    assert far["kid_mean"] > 10 * far["kid_std"] > 0
    assert far["precision"] < 0.2 and far["recall"] < 0.2


def test_classifier_space_gets_kid_and_precision_recall(tmp_path):
    """eval.classifier_ckpt: FID, KID and precision/recall in the classifier's features, same reference."""
    clf = make_checkpoint(tmp_path / "clf", ["task=classifier", "data=gmm"], kind="classifier")
    data = GMMDataModule()
    x, _ = data.mixture.sample(600, generator=torch.Generator().manual_seed(3))
    np.savez(tmp_path / "samples.npz", x=x.numpy())
    _, m = run_eval(
        tmp_path,
        f"samples={tmp_path / 'samples.npz'}",
        "metric=fid",
        "eval.ref_size=2000",
        f"eval.classifier_ckpt={clf}",
    )
    assert m["n_reference"] == 2000 and m["classifier_n_reference"] == 2000  # the same reference in both spaces
    assert abs(m["classifier_kid_mean"]) < 3 * m["classifier_kid_std"]
    assert 0 <= m["classifier_precision"] <= 1 and 0 <= m["classifier_recall"] <= 1
    assert m["classifier_recall"] > 0.5 and m["classifier_precision"] > 0.5


@pytest.mark.slow
def test_eval_all_on_images_is_offline_and_complete(tmp_path, image_run, offline):
    """metric=all on MNIST with no download and no flag: the pinned TorchScript Inception (named in
    metrics.json and the log), FID, KID, precision/recall, IS skipped with its reason, bits/dim with its SE."""
    from sdegen.metrics.inception import FID_HELPER_SHA256

    ckpt, cache = image_run
    run_dir, m = eval_images(
        tmp_path,
        ckpt,
        cache,
        "metric=all",
        "n_samples=8",
        "batch_size=8",
        "sampler.steps=2",
        "eval.ref_size=16",
        "eval.bpd.n_points=4",
        "eval.bpd.batch_size=4",
    )
    net = m["feature_network"]
    assert net["sha256"] == FID_HELPER_SHA256 and net["resize"] == "tf1-bilinear" and net["has_logits"] is False
    assert net["source"].endswith("default_1.pt") and m["features"] == "inception"
    assert "Inception: inception-v3-tf-2015-12-05" in (run_dir / "cli.log").read_text()
    assert "has no logits" in m["skipped"]["is"] and "is_mean" not in m and m["metric"] == "fid,kid,pr,bpd"
    assert "16 images" in m["reference"] and "not comparable" in m["reference"]
    assert m["n_samples"] == 8 and m["n_reference"] == 16 and m["kid_subset_size"] == 8
    # an untrained model draws noise: far from the digits in every metric
    assert m["fid"] > 100 and m["kid_mean"] > 3 * m["kid_std"] > 0
    assert 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1
    per = np.load(run_dir / "bpd_per_sample.npz")
    assert per["bpd_se"].shape == (4,) and np.all(np.isfinite(per["bpd_se"])) and np.all(per["bpd_se"] > 0)
    assert m["bpd_n_probes"] == 4
    assert m["bpd_se_rms"] == pytest.approx(float(np.sqrt(np.mean(per["bpd_se"] ** 2))))
    # one probe has no spread, so no SE: NaN per image, and no bpd_se_rms (never a NaN in metrics.json)
    run_dir, one = eval_images(tmp_path, ckpt, cache, "metric=bpd", "eval.bpd.n_points=4", "eval.bpd.n_probes=1")
    assert np.all(np.isnan(np.load(run_dir / "bpd_per_sample.npz")["bpd_se"]))
    assert one["bpd_n_probes"] == 1 and "bpd_se_rms" not in one


@pytest.mark.slow
def test_inception_kid_of_real_digits_is_zero_within_its_std(tmp_path, image_run, offline):
    """samples= of 16 real training digits against 16 test digits: KID ≈ 0 within its std; the same
    digits inverted (255 − x) are far (KID many stds above 0, FID much larger).  Subsets of 8: a subset
    as large as both sets is the same draw every time, and its std is 0 (not an error bar)."""
    from sdegen.data.mnist import EmbeddedMNISTDataModule

    _, cache = image_run
    data = EmbeddedMNISTDataModule()
    x, _ = data.reference(16, split="train", generator=torch.Generator().manual_seed(1))
    images = (data.unscale(torch.as_tensor(x)).clamp(0, 1) * 255).round().to(torch.uint8)
    results = []
    for name, img in (("real", images), ("inverted", 255 - images)):
        np.savez(tmp_path / f"{name}.npz", images=img.permute(0, 2, 3, 1).numpy())
        run_dir = tmp_path / name
        cli.main(
            [
                "sdegen",
                "eval",
                f"samples={tmp_path / f'{name}.npz'}",
                "data=mnist_embedded",
                "metric=kid",
                "eval.ref_size=16",
                "eval.kid_subset_size=8",
                f"eval.cache_dir={cache}",
                "progress=false",
                f"hydra.run.dir={run_dir}",
            ]
        )
        results.append(json.loads((run_dir / "metrics.json").read_text()))
    real, inverted = results
    assert abs(real["kid_mean"]) < 3 * real["kid_std"]
    assert inverted["kid_mean"] > 3 * inverted["kid_std"] > 0 and inverted["kid_mean"] > 5 * abs(real["kid_mean"])
    assert inverted["fid"] > real["fid"] + 50


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["eval.inception_weights=/nope.pth"], r"eval\.inception_weights=/nope\.pth: no such file; install"),
        (["metric=is"], r"metric=is: the inception-v3-tf-2015-12-05 .* has no logits"),
        (["eval.mnist_root={tmp}/nowhere"], r"eval\.mnist_root=.*nowhere: no MNIST test split there"),
        (["eval.classifier_ckpt={tmp}/nowhere"], r"no checkpoint or run folder at .*nowhere"),
    ],
    ids=["missing-weights", "is-offline", "mnist-root", "classifier-ckpt"],
)
def test_missing_prerequisites_stop_before_sampling(
    tmp_path, image_run, offline, monkeypatch, capsys, overrides, pattern
):
    """Each prerequisite (feature network, IS logits, reference data, classifier) is checked before any
    sample is drawn: one line, exit 2, and the sampler is never called."""
    import re

    from sdegen.commands import eval as eval_command

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started before the prerequisites were checked")

    monkeypatch.setattr(eval_command, "generate_samples", no_sampling)
    ckpt, cache = image_run
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        eval_images(tmp_path, ckpt, cache, "n_samples=4", *[o.format(tmp=tmp_path) for o in overrides])
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("sdegen: error: ") and re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "run" / "samples.npz").exists()


def test_raw_features_of_images_compare_in_model_space(tmp_path):
    """eval.features=raw on images: samples and reference are both model-space pixels (the reference
    comes as uint8 and is scaled), so real digits are close and inverted digits far."""
    from sdegen.data.mnist import EmbeddedMNISTDataModule

    data = EmbeddedMNISTDataModule()
    x, _ = data.reference(200, split="train", generator=torch.Generator().manual_seed(1))
    out = {}
    for name, xs in (("real", x), ("inverted", -x)):  # centred scaling: −x is 255 − pixel
        np.savez(tmp_path / f"{name}.npz", x=xs.numpy())
        run_dir = tmp_path / name
        cli.main(
            [
                "sdegen",
                "eval",
                f"samples={tmp_path / f'{name}.npz'}",
                "data=mnist_embedded",
                "metric=kid",
                "eval.features=raw",
                "eval.ref_size=200",
                "eval.kid_subset_size=100",
                f"eval.cache_dir={tmp_path / 'cache'}",
                "progress=false",
                f"hydra.run.dir={run_dir}",
            ]
        )
        out[name] = json.loads((run_dir / "metrics.json").read_text())
    real, inverted = out["real"], out["inverted"]
    assert real["features"] == "raw" and real["n_reference"] == 200
    assert abs(real["kid_mean"]) < 3 * real["kid_std"]
    assert inverted["kid_mean"] > 10 * inverted["kid_std"] and inverted["fid"] > 5 * real["fid"]


def test_eval_gap_alone_and_of_class_guided_samples(tmp_path):
    """metric=gap alone (no features): exact samples ≈ 0; labelled samples are compared with their own
    class's component p(x | y), so exact component samples are ≈ 0 with their labels and far off with
    the labels shuffled, or unlabelled against the whole mixture."""
    data = GMMDataModule()
    x, y = data.mixture.sample(4000, generator=torch.Generator().manual_seed(5))
    np.savez(tmp_path / "exact.npz", x=x.numpy())
    _, m = run_eval(tmp_path, f"samples={tmp_path / 'exact.npz'}", "metric=gap")
    assert "fid" not in m and m["gap_target"].startswith("p(x)")
    assert abs(m["gap"]) < 4 * m["gap_se"]
    np.savez(tmp_path / "labelled.npz", x=x.numpy(), labels=y.numpy())
    _, lab = run_eval(tmp_path, f"samples={tmp_path / 'labelled.npz'}", "metric=gap")
    assert lab["gap_target"].startswith("p(x | y)") and abs(lab["gap"]) < 4 * lab["gap_se"]
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    np.savez(tmp_path / "shuffled.npz", x=x.numpy(), y=shuffled.numpy())  # labels stored as `y` read the same
    _, bad = run_eval(tmp_path, f"samples={tmp_path / 'shuffled.npz'}", "metric=gap")
    assert bad["gap"] < -1.0
    # one class's samples: exact for p(x | y = 2); unlabelled, the whole mixture is the (wrong) target
    two = data.mixture.sample(4000, generator=torch.Generator().manual_seed(6), component=2)[0]
    np.savez(tmp_path / "two.npz", x=two.numpy(), labels=np.full(4000, 2))
    _, cond = run_eval(tmp_path, f"samples={tmp_path / 'two.npz'}", "metric=gap")
    assert abs(cond["gap"]) < 4 * cond["gap_se"]
    np.savez(tmp_path / "two_unlabelled.npz", x=two.numpy())
    _, joint = run_eval(tmp_path, f"samples={tmp_path / 'two_unlabelled.npz'}", "metric=gap")
    assert abs(joint["gap"]) > 10 * joint["gap_se"]
    np.savez(tmp_path / "bad_labels.npz", x=x.numpy(), labels=np.full(4000, 9))
    with pytest.raises(SystemExit):
        run_eval(tmp_path, f"samples={tmp_path / 'bad_labels.npz'}", "metric=gap")


def test_eval_gap_is_refused_without_an_exact_density(tmp_path, capsys):
    np.savez(tmp_path / "digits.npz", x=np.zeros((8, 1, 28, 28), dtype=np.float32))
    with pytest.raises(SystemExit):
        cli.main(
            [
                "sdegen",
                "eval",
                "data=mnist",
                f"samples={tmp_path / 'digits.npz'}",
                "metric=gap",
                f"hydra.run.dir={tmp_path / 'run'}",
            ]
        )
    assert "metric=gap needs samples of the Gaussian-mixture test bed" in capsys.readouterr().err
