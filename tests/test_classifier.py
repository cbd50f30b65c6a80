"""The time-dependent Wide-ResNet classifier: shapes, learning, checkpoints, the train/eval commands,
and guidance with a trained classifier."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sdegen import cli
from sdegen.data.gmm import GMMDataModule
from sdegen.models.wideresnet import TimeDependentWideResNet
from sdegen.runtime.checkpoints import load_classifier
from sdegen.sde import VESDE, VPSDE, GeometricSigma, LinearSchedule
from sdegen.training.classifier import ClassifierModule, noisy_batch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def test_shapes_and_time_dependence():
    model = TimeDependentWideResNet(in_channels=3, num_classes=7, depth=10, widen_factor=1)
    x = torch.randn(5, 3, 12, 12)
    assert model(x, torch.rand(5)).shape == (5, 7)
    assert model(x, torch.tensor(0.3)).shape == (5, 7)  # scalar t broadcast
    assert model.features(x, torch.rand(5)).shape == (5, model.feature_dim) == (5, 64)
    # t is an input: the same image at another noise level gives other logits
    assert not torch.allclose(model(x, torch.full((5,), 0.1)), model(x, torch.full((5,), 0.9)))
    ve = TimeDependentWideResNet(1, 4, time_input="log_sigma", sde=VESDE(GeometricSigma()))
    assert ve(torch.randn(2, 1, 4, 4), torch.rand(2)).shape == (2, 4)
    with pytest.raises(ValueError, match="6n"):
        TimeDependentWideResNet(depth=12)


def module_cfg(**task):
    cfg = OmegaConf.load(CONFIGS / "task" / "classifier.yaml")
    cfg = OmegaConf.create(
        {
            "task": OmegaConf.merge(cfg, task),
            "sde": {"_target_": "sdegen.sde.VPSDE", "schedule": {"_target_": "sdegen.sde.LinearSchedule"}},
        }
    )
    return cfg


def test_training_steps_decrease_the_loss():
    torch.manual_seed(0)
    data = GMMDataModule(shape=(1, 4, 4), train_size=256)
    sde = VPSDE(LinearSchedule())
    module = ClassifierModule(module_cfg(model={"depth": 10, "widen_factor": 1}, t_min=0.01), sde, data)
    x, y = data.mixture.sample(256, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)

    def fixed_loss():  # same t and noise every time: a deterministic objective
        return module._step((x, y), torch.Generator().manual_seed(5))[0]

    with torch.no_grad():
        before = float(fixed_loss())
    for _ in range(30):
        loss, _ = module._step((x, y), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(fixed_loss())
    assert after < before - 0.2, (before, after)


def test_noisy_batch_follows_the_marginal():
    sde = VPSDE(LinearSchedule())
    x0 = torch.ones(20000, 1, 1, 1)
    x_t, t = noisy_batch(sde, x0, t_min=0.5, generator=torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.5 and float(t.max()) <= 1.0
    residual = (x_t.flatten() - sde.alpha(t.double()).float()) / sde.marginal_std(t.double()).float()
    assert abs(float(residual.mean())) < 0.03 and abs(float(residual.std()) - 1) < 0.03


@pytest.mark.slow
def test_train_command_checkpoint_round_trip_and_eval(tmp_path):
    """`sdegen train task=classifier` -> load_classifier gives the same logits; `sdegen eval task=classifier`
    (in-process: the command line itself is tested in test_cli.py)."""
    run = tmp_path / "train"
    cli.main(
        [
            "sdegen",
            "train",
            "task=classifier",
            "data=gmm",
            "debug=fast",
            "logger=none",
            "task.model.widen_factor=1",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}",
        ]
    )
    ckpt = run / "checkpoints" / "last.ckpt"
    model, cfg = load_classifier(ckpt)
    assert cfg["task"]["name"] == "classifier" and cfg["data_info"]["num_classes"] == 4
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = {k[len("model.") :]: v for k, v in raw["state_dict"].items() if k.startswith("model.")}
    again = TimeDependentWideResNet(1, 4, **{**cfg["task"]["model"], "time_input": "t"})
    again.load_state_dict(state)
    x, t = torch.randn(3, 1, 4, 4), torch.rand(3)
    torch.testing.assert_close(model(x, t), again.eval()(x, t))
    assert not (run / "samples").exists()  # no score samples for a classifier
    with pytest.raises(ValueError, match="not a classifier"):
        bad = tmp_path / "bad.ckpt"
        torch.save({"state_dict": {}, "sdegen": {"kind": "score", "cfg": {}, "data": {}}}, bad)
        load_classifier(bad)

    out = tmp_path / "eval"
    cli.main(
        [
            "sdegen",
            "eval",
            "task=classifier",
            f"ckpt={ckpt}",
            "task.eval.n_points=200",
            "task.eval.n_times=3",
            f"hydra.run.dir={out}",
        ]
    )
    result = json.loads((out / "classifier_accuracy.json").read_text())
    assert len(result["accuracy"]) == 3 and 0 <= result["mean_accuracy"] <= 1
    assert abs(result["mean_accuracy"] - sum(result["accuracy"]) / 3) < 1e-9
    assert (out / "classifier_accuracy.png").is_file()


def test_trained_classifier_guides_sampling(tmp_path):
    """A WRN trained on the test bed's noisy data (a few hundred steps) guides the exact score
    towards its class: guided samples land in the requested component far more often than unguided."""
    from sdegen.guidance import apply_guidance
    from sdegen.models.gmm import GMMScore
    from sdegen.samplers import sample

    torch.manual_seed(0)
    data = GMMDataModule(shape=(1, 4, 4))
    sde = VPSDE(LinearSchedule())
    module = ClassifierModule(module_cfg(model={"depth": 10, "widen_factor": 1}), sde, data)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x, y = data.mixture.sample(128, generator=g)
        loss, _ = module._step((x, y), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = tmp_path / "clf.ckpt"
    cfg = OmegaConf.to_container(module.cfg)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()},
            "sdegen": {"cfg": cfg, "data": {"shape": [1, 4, 4], "num_classes": 4}, "kind": "classifier"},
        },
        ckpt,
    )
    score = GMMScore(data.mixture, sde)
    em = {**OmegaConf.to_container(OmegaConf.load(CONFIGS / "sampler" / "em.yaml")), "steps": 50}
    hits = {}
    for w in (0.0, 1.0, 2.0):
        classifier, _ = load_classifier(ckpt)
        guided = apply_guidance({"name": "classifier", "label": 0, "scale": w}, score, sde, data, classifier=classifier)
        x = sample(em, guided, sde, (400, 1, 4, 4), generator=torch.Generator().manual_seed(1)).x
        hits[w] = float((data.mixture.class_log_posterior(x).argmax(1) == 0).double().mean())
    # unguided: the component's weight (binomial SE at n = 400); a briefly trained classifier is under-confident
    # at large t, so w > 1 is needed for what the exact posterior gives at w = 1
    weight = float(data.mixture.weights[0])
    assert abs(hits[0.0] - weight) < 4 * (weight * (1 - weight) / 400) ** 0.5, hits
    assert hits[1.0] > hits[0.0] + 0.3 and hits[2.0] > 0.85, hits
