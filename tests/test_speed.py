"""Speed options of `sdegen train` (channels_last, compile, trainer.precision): a run with them trains the
same weights as one without, its checkpoint keeps plain parameter names and loads with
`load_score_model`; and sdegen.bench.train (scripts/bench_train.py) runs each variant in both loops (CPU,
2 steps)."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sdegen.commands.train import main
from sdegen.errors import UserError
from sdegen.runtime.checkpoints import load_score_model
from sdegen.training.speed import compile_network, to_channels_last

REPO = Path(__file__).resolve().parents[1]
#: a tiny NCSN++ on 3-channel 8×8 images (channels-last only differs from NCHW with C > 1), one resolution
#: level (torch.compile's time grows with the number of kernels); no dropout, so runs with different memory
#: layouts draw the same random numbers
TINY = [
    "model=ncsnpp",
    "model.nf=8",
    "model.ch_mult=[1]",
    "model.num_res_blocks=1",
    "model.attn_resolutions=[]",
    "model.dropout=0",
]


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "rgb.npz"
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8))
    return path


def config(npz, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "debug=fast",
                *TINY,
                "data=npz",
                f"data.train_file={npz}",
                "data.limit=null",
                "logger=none",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                "trainer.max_steps=3",
                "trainer.limit_val_batches=0",  # the training graph alone (compile=true compiles each graph)
                "sample_grid.at_end=false",
                "sample_grid.every_n_steps=0",
                *overrides,
            ],
        )


def train(run_dir, npz, *overrides):
    main(config(npz, *overrides), run_dir=run_dir)
    return torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", weights_only=True)


def initial_weights(cfg) -> dict:
    """The network's weights before training: built as ``sdegen train`` builds it (same seed, same order)."""
    import lightning as L

    from sdegen.runtime.config import build_sde
    from sdegen.runtime.setup import build_data
    from sdegen.training.module import ScoreModule

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    data = build_data(cfg.data)
    data.prepare_data()
    data.setup("fit")
    return {k: v.detach().clone() for k, v in ScoreModule(cfg, build_sde(cfg), data).state_dict().items()}


@pytest.fixture(scope="module")
def reference(rgb_npz, tmp_path_factory):
    """A run without the options."""
    return train(tmp_path_factory.mktemp("ref"), rgb_npz)


def assert_same_training(checkpoint, reference, atol):
    """Same parameter names (no ``_orig_mod.``) and the same raw and EMA weights as the reference run."""
    for key in ("state_dict", "current_model_state"):
        mine, theirs = checkpoint[key], reference[key]
        assert sorted(mine) == sorted(theirs) and not any("_orig_mod" in k for k in mine)
        for name, value in theirs.items():
            assert mine[name].dtype == value.dtype == torch.float32 or not value.is_floating_point()
            torch.testing.assert_close(mine[name], value, atol=atol, rtol=1e-4, msg=f"{key}[{name}]")


def test_reference_run_moves_the_weights_far_beyond_the_tolerance(reference, rgb_npz):
    # the comparisons below can fail: 3 Adam steps (lr 1e-3, 2e-3, 2e-3) move each weight by ~1e-3,
    # 100× their tolerance (a different initialisation would move the median by ~0.1: the upper bound)
    init = initial_weights(config(rgb_npz))
    raw = reference["current_model_state"]
    moved = torch.cat([(raw[k] - init[k]).abs().flatten() for k in raw if raw[k].is_floating_point()])
    assert 1e-4 < moved.median().item() < 1e-2


def test_channels_last_run_trains_the_same_weights(reference, rgb_npz, tmp_path):
    checkpoint = train(tmp_path, rgb_npz, "channels_last=true")
    assert checkpoint["sdegen"]["cfg"]["channels_last"] is True
    assert_same_training(checkpoint, reference, atol=1e-5)
    model, _ = load_score_model(tmp_path)
    ema = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    assert sorted(model.state_dict()) == sorted(ema)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, ema[name])
    assert torch.isfinite(model(torch.randn(2, 3, 8, 8), torch.full((2,), 0.5))).all()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("clang++") is None,
    reason="torch.compile on the CPU needs a C++ compiler (g++ or clang++)",
)
def test_compiled_run_trains_the_same_weights_with_plain_names(reference, rgb_npz, tmp_path):
    torch._dynamo.reset()
    checkpoint = train(tmp_path, rgb_npz, "compile=true", "channels_last=true")
    assert_same_training(checkpoint, reference, atol=1e-4)
    model, _ = load_score_model(tmp_path)  # plain names: loads into the uncompiled network
    assert getattr(model, "_compiled_call_impl", None) is None


def test_compile_without_a_cpp_compiler_is_a_user_error(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=r"compile=true on the CPU needs a C\+\+ compiler"):
        compile_network(torch.nn.Linear(2, 2), "default", "cpu")


def test_to_channels_last_converts_only_4d_tensors():
    x, y = torch.randn(2, 3, 4, 5), torch.arange(2)
    out_x, out_y = to_channels_last([x, y])
    assert out_x.is_contiguous(memory_format=torch.channels_last) and not out_x.is_contiguous()
    assert torch.equal(out_x, x) and out_y is y


# --- sdegen.bench.train (scripts/bench_train.py) ------------------------------------------------------------
@pytest.fixture(scope="module")
def bench():
    from sdegen.bench import train

    return train


BENCH_TINY = ["model.ch_mult=[1]", "model.num_res_blocks=1", "model.attn_resolutions=[]"]


def check_rows(rows, autocast, channels_last, compiled):
    for row in rows:
        for key in ("plain", "lightning", "ratio", "plain_mb", "lightning_mb"):
            assert math.isfinite(row[key]) and row[key] > 0, row
        want = {"autocast": autocast, "channels_last": channels_last, "compiled": compiled}
        assert row["plain_seen"] == want and row["lightning_seen"] == want, row


@pytest.mark.parametrize("precision, autocast", [("32-true", "off"), ("bf16-mixed", "bfloat16")])
def test_bench_runs_precision_and_channels_last_in_both_loops(bench, tmp_path, precision, autocast):
    rows = bench.run_variants(
        ["ncsnpp"], [precision], channels_last=True, batch=2, steps=2, warmup=1, ncsnpp_nf=8, overrides=BENCH_TINY
    )
    check_rows(rows, autocast, True, False)
    bench.print_table(rows, torch.device("cpu"), tmp_path / "bench.md")
    lines = (tmp_path / "bench.md").read_text().splitlines()
    assert lines[-1].startswith("| ncsnpp model.nf=8") and f"{precision} +channels-last" in lines[-1]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("clang++") is None,
    reason="torch.compile on the CPU needs a C++ compiler (g++ or clang++)",
)
def test_bench_runs_compile_in_both_loops(bench):
    rows = bench.run_variants(
        ["ncsnpp"],
        ["bf16-mixed"],
        channels_last=True,
        compile=True,
        batch=2,
        steps=2,
        warmup=1,
        ncsnpp_nf=8,
        overrides=BENCH_TINY,
    )
    check_rows(rows, "bfloat16", True, True)
