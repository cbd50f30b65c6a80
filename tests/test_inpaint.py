"""Inpainting: the replacement hook, masks, the exact conditional of the test bed, the command."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.sde import VESDE, VPSDE, GeometricSigma, LinearSchedule
from sdegen.tasks.inpaint import exact_imputation_error, impute, replacement_hook
from sdegen.tasks.masks import make_mask

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def sampler_cfg(name="em", steps=50):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "sampler" / f"{name}.yaml"))
    cfg["steps"] = steps
    return cfg


def test_hook_replaces_known_part_with_forward_noised_data():
    sde = VPSDE(LinearSchedule())
    x_known = torch.randn(1, 1, 4, 4).expand(20000, -1, -1, -1).clone()
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    hook = replacement_hook(sde, x_known, mask, generator=torch.Generator().manual_seed(0))
    x = torch.full_like(x_known, 7.0)
    t = torch.tensor(0.3, dtype=torch.float64)
    out = hook(x, t)
    assert torch.equal(out[..., 2:], x[..., 2:])  # unknown part untouched
    alpha, std = float(sde.alpha(t)), float(sde.marginal_std(t))
    torch.testing.assert_close(out[..., :2].mean(0), alpha * x_known[0, ..., :2], atol=0.02, rtol=0)
    torch.testing.assert_close(out[..., :2].std(0), torch.full((1, 4, 2), std), atol=0.02, rtol=0)
    # at t = 0 the known data are copied exactly
    torch.testing.assert_close(hook(x, torch.tensor(0.0, dtype=torch.float64))[..., :2], x_known[..., :2])


def test_initial_state_is_drawn_at_the_prior_scale():
    """The reference code drew N(0, I) for every SDE; VE's prior has std σ_max = 50."""
    sde = VESDE(GeometricSigma())
    seen = {}

    def fake_sampler(score_fn, sde, x, timesteps, **kwargs):
        seen["x"] = x
        return type("R", (), {"x": x, "nfe": 0})()

    impute(
        lambda x, t: x, sde, {"_target_": fake_sampler, "steps": 2}, torch.zeros(4000, 1, 2, 2), torch.ones(1, 1, 2, 2)
    )
    assert abs(float(seen["x"].std()) - sde.prior_std) < 0.05 * sde.prior_std


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.multiscale(4, (1, 4, 4), seed=0)  # the data=gmm default


MASK = torch.zeros(1, 1, 4, 4)
MASK.view(-1)[:4] = 1  # the first 4 of 16 coordinates observed

#: documented error levels of plain replacement (r = 1) on this problem (EM, 25 steps, VP, 6 observations
#: x 150 imputations; measured: sliced W2 0.41 vs noise floor 0.04, TV of the component weights 0.40;
#: r = 5: 0.32 / 0.29, r = 10: 0.27 / 0.23)
REPLACEMENT_SW2_LEVEL, REPLACEMENT_TV_LEVEL = 0.5, 0.5


def test_replacement_error_is_bounded_and_resampling_reduces_it(mixture):
    sde = VPSDE(LinearSchedule())
    score = GMMScore(mixture, sde)
    err = {
        r: exact_imputation_error(mixture, sde, score, sampler_cfg("em", 25), MASK, n_obs=6, per_obs=150, resample=r)
        for r in (1, 5, 10)
    }
    assert err[1]["known_error"] == 0 and err[10]["known_error"] == 0  # observed coordinates kept exactly
    assert err[1]["sw2"] < REPLACEMENT_SW2_LEVEL and err[1]["tv"] < REPLACEMENT_TV_LEVEL, err[1]
    # replacement is approximate: clearly above the noise floor
    assert err[1]["sw2"] > 3 * err[1]["floor"]
    # RePaint resampling brings the samples closer to the exact conditional
    assert err[5]["sw2"] < err[1]["sw2"] - 0.05 and err[5]["tv"] < err[1]["tv"] - 0.05, (err[1], err[5])
    assert err[10]["sw2"] < err[1]["sw2"] - 0.1 and err[10]["tv"] < err[1]["tv"] - 0.1, (err[1], err[10])


@pytest.mark.parametrize("sampler", sorted(p.stem for p in (CONFIGS / "sampler").glob("*.yaml")))
def test_every_sampler_inpaints(mixture, sampler):
    """The hook works with every sampler: known part exact, error at the replacement level."""
    sde = VESDE(GeometricSigma())
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "sampler" / f"{sampler}.yaml"))
    cfg["steps"] = min(int(cfg["steps"]), 30)
    if cfg.get("options", {}).get("rtol"):  # adaptive ODE: a loose tolerance is enough here
        cfg["options"].update(rtol=1e-3, atol=1e-3)
    err = exact_imputation_error(mixture, sde, GMMScore(mixture, sde), cfg, MASK, n_obs=4, per_obs=100)
    assert err["known_error"] == 0
    assert err["sw2"] < REPLACEMENT_SW2_LEVEL + 0.1 and err["tv"] < REPLACEMENT_TV_LEVEL + 0.1, (sampler, err)


def test_masks():
    g = torch.Generator().manual_seed(0)
    box = make_mask("box", 2, (3, 8, 8), size=0.5)
    assert box.shape == (2, 1, 8, 8) and box.sum() == 2 * (64 - 16) and box[0, 0, 4, 4] == 0
    half = make_mask("half", 1, (1, 4, 6), side="right", size=0.3)  # options of other kinds are ignored
    assert half[0, 0, :, :3].eq(1).all() and half[0, 0, :, 3:].eq(0).all()
    rnd = make_mask("random", 64, (1, 16, 16), fraction=0.3, generator=g)
    assert abs(1 - float(rnd.mean()) - 0.3) < 0.02
    digits = make_mask("mnist", 3, (3, 32, 32), generator=g)
    assert digits.shape == (3, 1, 32, 32) and 0.05 < 1 - float(digits.mean()) < 0.5
    with pytest.raises(ValueError, match="task.mask.kind=star is not a mask kind"):
        make_mask("star", 1, (1, 4, 4))
    with pytest.raises(ValueError, match="side"):
        make_mask("half", 1, (1, 4, 4), side="middle")


def test_file_mask(tmp_path):
    from PIL import Image

    img = np.full((20, 20), 255, np.uint8)
    img[:, :10] = 0  # dark left half = missing
    Image.fromarray(img).save(tmp_path / "m.png")
    mask = make_mask("file", 2, (1, 10, 10), path=str(tmp_path / "m.png"))
    assert mask[:, :, :, :4].eq(0).all() and mask[:, :, :, 6:].eq(1).all()
    with pytest.raises(ValueError, match="not a file"):
        make_mask("file", 1, (1, 4, 4), path=str(tmp_path / "none.png"))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", [["sampler.steps=20"], ["sampler=dpm_solver"]])
def test_inpaint_command_on_the_test_bed(tmp_path, monkeypatch, sampler):
    """Also with a sampler whose defaults are `auto` (resolved from its step-count preset: the inpainting task
    copies the sampler config and must resolve it the same way).  In this process: `sdegen sample` as a
    separate process is tested in test_sample_cli.py."""
    from sdegen import cli

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    cli.main(
        [
            "sdegen",
            "sample",
            "task=inpaint",
            "model=gmm",
            "data=gmm",
            "n_samples=16",
            *sampler,
            "task.mask.kind=half",
            "task.resample=2",
            f"hydra.run.dir={out}",
            "progress=false",
        ]
    )  # exit 2 raises
    f = np.load(out / "samples.npz")
    assert f["samples"].shape == f["originals"].shape == (16, 1, 4, 4)
    known = f["masks"].astype(bool).repeat(1, axis=1)
    np.testing.assert_allclose(f["samples"][known], f["originals"][known], atol=1e-6)
    assert not np.allclose(f["samples"][~known], f["originals"][~known])


def test_inpaint_run_on_images_writes_the_figure(tmp_path):
    """Image data: samples.npz and the masked / imputed / original figure (thesis Fig. 4.12)."""
    from sdegen.commands.sample import run_task
    from sdegen.data.mnist import EmbeddedMNISTDataModule
    from sdegen.runtime.setup import Setup

    data = EmbeddedMNISTDataModule()
    sde = VPSDE(LinearSchedule())
    cfg = OmegaConf.create(
        {
            "n_samples": 4,
            "batch_size": 4,
            "seed": 0,
            "progress": False,
            "output_dir": str(tmp_path),
            "sampler": sampler_cfg("em", 5),
            "task": {"name": "inpaint", "split": "test", "resample": 1, "mask": {"kind": "mnist", "scale": 1.0}},
        }
    )
    setup = Setup(cfg, sde, score_model=None, data=data, device=torch.device("cpu"))
    result = run_task("inpaint", cfg, setup, lambda x, t: -x, tmp_path)  # the score of N(0, I) data under VP
    f = np.load(tmp_path / "samples.npz")
    assert f["samples"].shape == (4, 1, 28, 28) and (tmp_path / "inpaint.png").is_file()
    known = f["masks"].astype(bool)
    np.testing.assert_allclose(f["samples"][known], f["originals"][known], atol=1e-5)
    assert result["n"] == 4


@pytest.mark.parametrize(
    "mask",
    [
        ["task.mask.kind=circle"],
        ["task.mask.kind=file"],
        ["task.mask.kind=file", "task.mask.path={d}/none.png"],
        ["task.mask.kind=file", "task.mask.path={d}/text.png"],
    ],
)
def test_bad_mask_options_fail_in_one_line(tmp_path, monkeypatch, capsys, mask):
    from sdegen import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.png").write_text("not an image")
    args = [
        "sample",
        "task=inpaint",
        "model=gmm",
        "data=gmm",
        "n_samples=2",
        "progress=false",
        *(m.format(d=tmp_path) for m in mask),
        f"hydra.run.dir={tmp_path / 'out'}",
    ]
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        cli.main(["sdegen", *args])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err.value.code == 2 and len(lines) == 1 and lines[0].startswith("sdegen: error: "), lines
    assert "task.mask." in lines[0] and not (tmp_path / "out").exists()
