"""samples.npz and metrics.json: the keys of the files the commands write are the vocabulary of
``runtime.samples_file``, and a bad samples file is one line (exit 2, no traceback) for `sdegen eval`."""

import json

import numpy as np
import pytest
import torch

from sdegen import cli
from sdegen.data.gmm import GMMDataModule
from sdegen.errors import UserError
from sdegen.runtime import samples_file


def run(*argv):
    cli.main(["sdegen", *argv])


def test_files_written_by_sample_and_eval_use_the_vocabulary(tmp_path):
    """Class-guided samples of the exact mixture: samples.npz has x, labels, nfe ... and no other key;
    eval of that file and eval drawing its own samples write only vocabulary keys in metrics.json."""
    run(
        "sample",
        "model=gmm",
        "data=gmm",
        "guidance=classifier",
        "guidance.label=all",
        "n_samples=40",
        "batch_size=20",
        "sampler=dpm_solver",
        "compare=[em]",
        "progress=false",
        f"hydra.run.dir={tmp_path / 's'}",
    )
    with np.load(tmp_path / "s" / "samples.npz") as f:
        keys = set(f.files)
        assert f["labels"].shape == (40,) and f["x"].shape == (40, 1, 4, 4)
    assert {"x", "labels", "nfe", "nfe_total", "nfe_per_batch", "seconds"} == keys <= set(samples_file.SAMPLES_KEYS)
    produced = [json.loads((tmp_path / "s" / "metrics.json").read_text())]
    run(
        "eval",
        f"samples={tmp_path / 's' / 'samples.npz'}",
        "metric=[kid,gap]",
        "eval.ref_size=200",
        f"eval.cache_dir={tmp_path / 'cache'}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'e1'}",
    )
    run(
        "eval",
        "model=gmm",
        "data=gmm",
        "metric=all",
        "n_samples=400",
        "eval.ref_size=200",
        "eval.bpd.n_points=8",
        f"eval.cache_dir={tmp_path / 'cache'}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'e2'}",
    )
    produced += [json.loads((tmp_path / e / "metrics.json").read_text()) for e in ("e1", "e2")]
    for metrics in produced:
        unknown = [k for k in metrics if not samples_file.is_metrics_key(k)]
        assert not unknown, unknown
    assert "compare/em/nfe" in produced[0] and produced[1]["gap_target"].startswith("p(x | y)")
    assert produced[1]["metric"] == "fid,kid,pr,gap" and produced[2]["metric"] == "fid,kid,pr,is,bpd,gap"
    with np.load(tmp_path / "e2" / "samples.npz") as f:
        assert set(f.files) <= set(samples_file.SAMPLES_KEYS)


def test_the_vocabulary_names_one_key_per_concept():
    """The old names are not keys: labels not y, nfe not sampler_nfe, n_samples not n_fake."""
    assert "y" not in samples_file.SAMPLES_KEYS and samples_file.SAMPLES_KEY_ALIASES == {"y": "labels"}
    assert not samples_file.is_metrics_key("sampler_nfe") and samples_file.is_metrics_key("nfe")
    assert not samples_file.is_metrics_key("n_fake") and not samples_file.is_metrics_key("classifier_n_real")
    assert samples_file.is_metrics_key("classifier_fid") and not samples_file.is_metrics_key("classifier_nope")
    with pytest.raises(ValueError, match="not in SAMPLES_KEYS"):
        samples_file.write_samples("unused.npz", {"x": np.zeros((1, 1, 2, 2)), "y": np.zeros(1)})


def test_labels_stored_as_y_read_as_labels(tmp_path):
    np.savez(tmp_path / "old.npz", x=np.zeros((3, 1, 2, 2), np.float32), y=np.arange(3))
    arrays = samples_file.read_samples(tmp_path / "old.npz")
    assert "y" not in arrays and arrays["labels"].tolist() == [0, 1, 2]


def gmm_points(n):
    return GMMDataModule().mixture.sample(n, generator=torch.Generator().manual_seed(0))[0].numpy()


BAD_FILES = {
    "no-samples": (lambda: {"x": np.zeros((0, 1, 4, 4), np.float32)}, r"holds no samples"),
    "one-sample": (lambda: {"x": gmm_points(1)}, r"holds 1 sample; metric=fid needs at least 4"),
    "uint8-x": (lambda: {"x": np.zeros((8, 1, 4, 4), np.uint8)}, r"x has dtype uint8; x holds float samples"),
    "string-x": (lambda: {"x": np.array(["a", "b"])}, r"x has dtype <U1"),
    "nan": (lambda: {"x": np.full((8, 1, 4, 4), np.nan, np.float32)}, r"8 of 8 samples contain NaN/inf"),
    "flat": (lambda: {"x": np.zeros((8, 16), np.float32)}, r"x has shape \(8, 16\); it must be \(N, C, H, W\)"),
    "out-of-range": (
        lambda: {"x": np.random.default_rng(0).uniform(-500, 500, (64, 1, 4, 4))},
        r"x spans \[-4\d\d\.?\d*, 4\d\d\.?\d*\], outside the range of GMMDataModule samples",
    ),
    "labels": (lambda: {"x": gmm_points(8), "labels": np.zeros(3, np.int64)}, r"labels have .* shape \(3,\)"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_samples_file_is_one_line(tmp_path, capsys, name):
    make, pattern = BAD_FILES[name]
    np.savez(tmp_path / "bad.npz", **make())
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        run(
            "eval",
            "model=gmm",
            "data=gmm",
            f"samples={tmp_path / 'bad.npz'}",
            "metric=fid",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"eval.cache_dir={tmp_path / 'cache'}",
        )
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("sdegen: error: samples=") and __import__("re").search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bits_per_dim_of_samples_is_refused_or_left_out(tmp_path, capsys):
    """bits/dim is a model's: metric=bpd samples= (no ckpt=) is one line; metric=all leaves it out and says why."""
    np.savez(tmp_path / "s.npz", x=gmm_points(1000))
    with pytest.raises(SystemExit):
        run(
            "eval",
            "model=gmm",
            "data=gmm",
            f"samples={tmp_path / 's.npz'}",
            "metric=bpd",
            f"hydra.run.dir={tmp_path / 'run'}",
        )
    assert "metric=bpd is a model's bits/dim on held-out data" in capsys.readouterr().err
    run(
        "eval",
        "model=gmm",
        "data=gmm",
        f"samples={tmp_path / 's.npz'}",
        "metric=all",
        "eval.ref_size=100",
        f"eval.cache_dir={tmp_path / 'cache'}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'all'}",
    )
    m = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert "bpd" not in m and "bpd" in m["skipped"] and m["metric"] == "fid,kid,pr,is,gap"


def test_check_samples_range_of_images():
    """Float images: [0, 1] or the model's [-1, 1], with the tolerance; the uint8 images are the samples."""
    from sdegen.data.mnist import EmbeddedMNISTDataModule

    data = EmbeddedMNISTDataModule()
    lo, hi = samples_file.data_range(data)
    assert (lo, hi) == (-1 - samples_file.IMAGE_TOLERANCE, 1 + samples_file.IMAGE_TOLERANCE)
    ok = {"x": np.full((2, 1, 28, 28), hi, np.float32)}
    samples_file.check_samples(ok, data, "ok.npz")
    with pytest.raises(UserError, match="outside the range"):
        samples_file.check_samples({"x": ok["x"] + 0.01}, data, "bad.npz")
    samples_file.check_samples({**ok, "x": ok["x"] + 9, "images": np.zeros((2, 28, 28, 1), np.uint8)}, data, "i.npz")
