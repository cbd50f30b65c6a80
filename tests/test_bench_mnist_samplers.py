"""sdegen.bench.mnist (scripts/bench_mnist_samplers.py): its settings parse, and it draws and scores exactly
what `sdegen sample` + the digit judge give for the same checkpoint, sampler, seed and batch size."""

import json

import numpy as np
import pytest
import torch

from sdegen import cli
from sdegen.bench import mnist as B
from sdegen.data.mnist import EmbeddedMNISTDataModule
from sdegen.errors import UserError
from sdegen.metrics import judge as J
from test_judge import fake_mnist_root


def test_settings_parse_with_lists_and_types():
    assert B.parse_setting("em") == ("em", {})
    name, over = B.parse_setting("restart:steps=8,restarts=[[4,4,0.1,2.0],[2,1,1.0,5.0]],grid=edm,start_noise=null")
    assert name == "restart"
    assert over == {"steps": 8, "restarts": [[4, 4, 0.1, 2.0], [2, 1, 1.0, 5.0]], "grid": "edm", "start_noise": None}
    assert B.settings_of(["matched"]) == list(B.MATCHED) and B.settings_of(["tune", "em"])[-1] == ("em", {})
    # the listed settings are written out in full (they do not follow the YAML defaults)
    assert all("start_noise" in o and "end_noise" in o for n, o in B.TUNE if n == "dpm_solver_sde")
    assert ("restart", B.RESTART_49) in B.MATCHED


def test_bad_settings_fail_before_any_work(tmp_path):
    judge = tmp_path / "judge.pt"
    judge.write_bytes(b"")  # never read: the settings are checked first
    for setting, message in (("em:stepz=3", "stepz is not an option of sample_em"), ("emm", "sampler=emm is not")):
        with pytest.raises(UserError, match=message):
            B.run([tmp_path / "no_run"], B.settings_of([setting]), judge=judge, data=tmp_path)
    with pytest.raises(UserError, match="no digit judge"):
        B.run([tmp_path / "no_run"], B.MATCHED, judge=tmp_path / "missing.pt", data=tmp_path)


def test_draws_and_scores_like_sdegen_sample(tiny_run, tmp_path):
    run = tiny_run
    train = np.asarray(EmbeddedMNISTDataModule().load_split("train")[0])
    root = fake_mnist_root(tmp_path / "data", train[:40])
    torch.manual_seed(0)
    torch.save(J.DigitJudge().state_dict(), tmp_path / "judge.pt")

    out = tmp_path / "rows.jsonl"
    returned = B.run(
        [run],
        B.settings_of(["em:steps=3", "dpm_solver:steps=4"]),
        judge=tmp_path / "judge.pt",
        data=root,
        n=12,
        seeds=[1],
        device="cpu",
        batch=5,
        jsonl=out,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == json.loads(json.dumps(returned))
    assert [(r["sampler"], r["nfe"], r["n"], r["seed"]) for r in rows] == [("em", 4, 12, 1), ("dpm_solver", 5, 12, 1)]

    judge = J.load_judge(tmp_path / "judge.pt")
    ref = J.reference_stats(judge, train[:40])
    for row, sampler, steps in zip(rows, ("em", "dpm_solver"), (3, 4)):
        sample_dir = tmp_path / f"sample_{sampler}"
        cli.main(
            [
                "sdegen",
                "sample",
                f"ckpt={run}",
                f"sampler={sampler}",
                f"sampler.steps={steps}",
                "n_samples=12",
                "batch_size=5",
                "seed=1",
                "progress=false",
                f"hydra.run.dir={sample_dir}",
            ]
        )
        images = np.load(sample_dir / "samples.npz")["images"]
        fig = J.judge_figures(judge, J.to_unit_nchw(images), ref)
        assert row["frechet"] == pytest.approx(fig["frechet"], rel=1e-9) and row["frechet"] > 0
        assert row["confident"] == pytest.approx(fig["confident"]) and row["balance"] == pytest.approx(fig["balance"])
