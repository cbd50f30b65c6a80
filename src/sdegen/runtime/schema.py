"""The typed schema of every config key: type, range, choices and a one-line meaning, as pydantic models.

A composed config (and a checkpoint's stored config) is plain data; ``validate(cfg, command)`` checks it
once, after composition and before any work, and the first violation is a ``UserError`` of one line
naming the key, the value and what is allowed (``sampler.steps must be an integer >= 1 and <= 100000
(got 2.5)``).  Unknown keys fail.  Groups are checked by their choice: ``sde``, ``schedule``, ``model``,
``data`` and ``sampler`` by ``_target_``; ``loss``, ``guidance`` and ``task`` by ``name``.  Size-like
values (steps, sample counts, batch sizes) have upper bounds, so no input runs for hours before its first
line of output.  Defaults live in ``configs/``, not here: the schema says what is allowed.

``python -m sdegen.runtime.schema --markdown`` writes ``docs/configuration.md`` (tests keep it in sync).
"""

from __future__ import annotations

import math
import sys
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from ..errors import UserError
from ..training.speed import COMPILE_MODES, PRECISION_ALIASES, PRECISIONS

# --- value types ------------------------------------------------------------------------------------------
#: upper bounds of size-like values (a value above them would run for hours before any output)
MAX_STEPS = 100_000
MAX_SAMPLES = 10_000_000
MAX_BATCH = 1_000_000
MAX_TRAIN_STEPS = 1_000_000_000
MAX_SEED = 2**32 - 1  # lightning's seed_everything takes unsigned 32-bit seeds


def _integral(value):
    """A float with an integral value (``1e3`` on the command line) counts as an integer."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def Int(**limits):
    """An integer (``2.0`` counts, ``2.5``, ``true`` and ``"2"`` do not) within ``limits`` (ge/gt/le/lt)."""
    return Annotated[int, BeforeValidator(_integral), Field(**limits)]


def Num(**limits):
    """A finite real number (an integer counts) within ``limits``; ``allow_inf_nan=True`` admits ``.inf``."""
    return Annotated[float, Field(**limits)]


Text = Annotated[str, Field(min_length=1)]
Auto = Literal["auto"]
Seed = Int(ge=0, le=MAX_SEED)
Fraction = Num(ge=0, le=1)
Device = Annotated[str, Field(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")]
Split = Literal["train", "val", "test"]


def F(help: str, **kwargs) -> Any:
    """A required field with its one-line meaning (defaults are the YAMLs'; a missing key is no error)."""
    return Field(description=help, **kwargs)


class Node(BaseModel):
    """A config node: typed, strict (no string-to-number guessing), finite numbers, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=True)


class OpenNode(Node):
    """A node whose other keys are checked against the code that reads them (e.g. ``lightning.Trainer``)."""

    model_config = ConfigDict(extra="allow")


def target(path: str):
    """The ``_target_`` field of a node that builds ``path``."""
    return Field(
        alias="_target_", description="the object built (one of sdegen's configs/)", json_schema_extra={"target": path}
    )


# --- groups ------------------------------------------------------------------------------------------------
class LinearSchedule(Node):
    target_: Literal["sdegen.sde.LinearSchedule"] = target("sdegen.sde.LinearSchedule")
    beta_min: Num(ge=0, le=1e4) = F("β(0) of β(t) = β_min + t (β_max − β_min)")
    beta_max: Num(gt=0, le=1e4) = F("β(1)")


class CosineSchedule(Node):
    target_: Literal["sdegen.sde.CosineSchedule"] = target("sdegen.sde.CosineSchedule")
    s: Num(ge=0, lt=1) = F("offset s of Nichol & Dhariwal's cosine ᾱ(t)")
    beta_clip: Num(gt=0, le=1e6) = F("β(t) is clipped at this value near t = 1")


class GeometricSigma(Node):
    target_: Literal["sdegen.sde.GeometricSigma"] = target("sdegen.sde.GeometricSigma")
    sigma_min: Num(gt=0, le=1e6) = F("σ(0) of the VE noise scale σ(t) = σ_min (σ_max/σ_min)^t")
    sigma_max: Num(gt=0, le=1e6) = F("σ(1)")


class _SDE(Node):
    schedule: Any = F("the schedule group (interpolated: ${schedule})")
    T: Num(gt=0, le=1e6) = F("end time of the forward SDE")
    eps: Num(gt=0, le=1e6) = F("smallest time used in training and likelihoods (0 < eps < T)")


class VPSDE(_SDE):
    target_: Literal["sdegen.sde.VPSDE"] = target("sdegen.sde.VPSDE")


class SubVPSDE(_SDE):
    target_: Literal["sdegen.sde.SubVPSDE"] = target("sdegen.sde.SubVPSDE")


class VESDE(_SDE):
    target_: Literal["sdegen.sde.VESDE"] = target("sdegen.sde.VESDE")


TimeInput = Literal["t", "log_sigma", "auto"]


class _Network(Node):
    fourier_scale: Num(gt=0, le=1e4) = F("std of the random Fourier frequencies of the time embedding")
    time_input: TimeInput = F("the network's time input: t, log σ(t), or auto (log σ for VE, t otherwise)")
    input_scaling: bool = F("divide x_t by √(α(t)² + σ(t)²) (preconditioning: eps)")
    preconditioning: Literal["eps", "edm"] = F("eps: the body predicts −ε; edm: Karras et al.'s c_skip/c_out/c_in")
    data_std: Num(gt=0, le=1e4) = F("the data's std σ_d assumed by the edm preconditioning")
    conditional: bool = F("class-conditional (a label embedding and a null label for classifier-free guidance)")
    class_dropout: Fraction = F("probability of dropping the label during training, in [0, 1]")


class ScoreNet(_Network):
    target_: Literal["sdegen.models.scorenet.ScoreNet"] = target("sdegen.models.scorenet.ScoreNet")
    channels: Annotated[list[Int(ge=1, le=8192)], Field(min_length=1, max_length=8)] = F(
        "width per resolution (1 to 8 resolutions)"
    )
    patch_size: Int(ge=1, le=16) = F("fold p×p pixel patches into channels first (1: full resolution)")
    embed_dim: Int(ge=2, le=8192) = F("size of the time (and label) embedding")
    embedding: Literal["fourier", "sinusoidal"] = F("time embedding: Gaussian random features or sinusoidal")


class NCSNpp(_Network):
    target_: Literal["sdegen.models.ncsnpp.NCSNpp"] = target("sdegen.models.ncsnpp.NCSNpp")
    nf: Int(ge=1, le=8192) = F("base width")
    ch_mult: Annotated[list[Int(ge=1, le=64)], Field(min_length=1, max_length=8)] = F(
        "width multiplier per resolution (1 to 8 resolutions)"
    )
    num_res_blocks: Int(ge=1, le=64) = F("residual blocks per resolution")
    attn_resolutions: Annotated[list[Int(ge=1, le=4096)], Field(max_length=16)] = F(
        "resolutions (pixels) with self-attention"
    )
    dropout: Num(ge=0, lt=1) = F("dropout probability in the residual blocks")
    embedding: Literal["fourier", "sinusoidal", "auto"] = F("time embedding (auto: fourier for VE, else sinusoidal)")
    skip_rescale: bool = F("scale skip connections by 1/√2")


class GMMScore(Node):
    target_: Literal["sdegen.models.gmm.gmm_score_from_data"] = target("sdegen.models.gmm.gmm_score_from_data")


Scaling = Literal["centered", "unit"]


class _Images(Node):
    batch_size: Int(ge=1, le=MAX_BATCH) = F("training batch size (per device)")
    num_workers: Int(ge=0, le=256) = F("data-loader worker processes")
    scaling: Scaling = F("pixel range: centered [-1, 1] or unit [0, 1]")
    dequantize: bool = F("uniform dequantisation (x + U[0,1))/256 of training images")
    hflip: bool = F("random horizontal flips of training images")
    limit: Int(ge=1, le=MAX_SAMPLES) | None = F("use only the first N images of each split (null: all)")
    seed: Seed = F("seed of the split and of the data order")


class EmbeddedMNIST(_Images):
    target_: Literal["sdegen.data.mnist.EmbeddedMNISTDataModule"] = target("sdegen.data.mnist.EmbeddedMNISTDataModule")
    val_per_class: Int(ge=1, le=250) = F("validation digits per class (of the 500 per class that ship)")


class MNIST(_Images):
    target_: Literal["sdegen.data.mnist.MNISTDataModule"] = target("sdegen.data.mnist.MNISTDataModule")
    root: Text = F("torchvision root holding MNIST/raw")
    download: bool = F("download MNIST into root when it is not there")


class CIFAR10(_Images):
    target_: Literal["sdegen.data.cifar10.CIFAR10DataModule"] = target("sdegen.data.cifar10.CIFAR10DataModule")
    root: Text = F("torchvision root holding cifar-10-batches-py (or the npz subsets)")
    download: bool = F("download CIFAR-10 into root when it is not there")
    source: Literal["auto", "torchvision", "npz"] = F("torchvision's batches, the npz subsets, or auto")
    train_file: Text = F("npz training subset, relative to root unless absolute")
    test_file: Text = F("npz test subset, relative to root unless absolute")


class NpzImages(_Images):
    target_: Literal["sdegen.data.images.NpzDataModule"] = target("sdegen.data.images.NpzDataModule")
    train_file: Text = F(".npz with images (uint8 N×H×W×C or N×H×W) and optional labels")
    test_file: Text | None = F("test .npz (null: the last val_fraction of train_file)")
    val_fraction: Num(ge=0, lt=1) = F("fraction of train_file held out when test_file is null")
    num_classes: Int(ge=0, le=1_000_000) | None = F("classes (null: max(label) + 1, or 0 without labels)")


class ImageFolder(_Images):
    target_: Literal["sdegen.data.images.ImageFolderDataModule"] = target("sdegen.data.images.ImageFolderDataModule")
    root: Text = F("folder in ImageFolder layout root/<class>/<image>")
    image_size: Int(ge=4, le=4096) = F("images are resized and centre-cropped to this size")
    channels: Literal[1, 3] = F("1 (grey) or 3 (RGB)")
    val_fraction: Num(ge=0, lt=1) = F("fraction of images held out for validation")


class GMMData(Node):
    target_: Literal["sdegen.data.gmm.GMMDataModule"] = target("sdegen.data.gmm.GMMDataModule")
    params_file: Text | None = F(".npz with means (K,D), stds (K,D), weights (K,), shape (3,); null: the preset")
    num_components: Int(ge=1, le=10_000) = F("mixture components of the preset")
    shape: Annotated[list[Int(ge=1, le=4096)], Field(min_length=3, max_length=3)] = F("sample shape [C, H, W]")
    std_min: Num(gt=0, le=1e4) = F("smallest component std of the preset (log-uniform in [std_min, std_max])")
    std_max: Num(gt=0, le=1e4) = F("largest component std of the preset")
    seed: Seed = F("seed of the preset's parameters and of the samples")
    train_size: Int(ge=1, le=MAX_SAMPLES) = F("training samples")
    val_size: Int(ge=1, le=MAX_SAMPLES) = F("validation samples")
    batch_size: Int(ge=1, le=MAX_BATCH) = F("training batch size (per device)")
    limit: Int(ge=1, le=MAX_SAMPLES) | None = F("use at most N training and N validation samples (null: all)")


# --- samplers ------------------------------------------------------------------------------------------------
Grid = Literal["uniform", "logsnr", "edm", "shifted", "focus"]


class GridOptions(Node):
    center: Num(gt=0) | None = F("focus: the bump's centre σ/α (pins it; null: follows data_std)")
    center_std: Num(gt=0) = F("focus: centre = center_std × data_std")
    boost: Num(ge=0) = F("focus: extra step density at the centre (0: the log-SNR grid)")
    width: Num(gt=0) = F("focus: width of the bump in log-SNR")
    rho: Num() = F("edm: exponent ρ; shifted: negative exponent")
    shift: Num(ge=0) = F("shifted: σ/α shift")


class _Sampler(Node):
    steps: Int(ge=1, le=MAX_STEPS) = F(f"solver steps, 1 to {MAX_STEPS}")
    eps: Num(gt=0, le=1e6) = F("end time when end_noise is null (0 < eps < sde.T)")
    end_noise: Num(gt=0, le=1e6) | Auto | None = F("σ/α where the grid ends (null: at eps; auto: the preset)")
    start_noise: Num(gt=0, le=1e6) | Auto | None = F("σ/α where the grid starts (null: at T; auto: the preset)")
    grid: Grid | Auto = F("time grid: uniform, logsnr, edm, shifted, focus (auto: the preset)")
    grid_options: GridOptions | Auto = F("the grid's options, e.g. {center_std: 4.0} ({}: its defaults)")
    data_std: Num(gt=0, le=1e6) | Auto | None = F("the data's per-dimension std the focus grid follows (auto: known)")
    denoise: bool | Auto = F("final Tweedie step E[x_0 | x_eps] (1 NFE)")
    resample: Int(ge=1, le=1000) = F("RePaint jumps per step (task=inpaint)")


class EM(_Sampler):
    target_: Literal["sdegen.samplers.em.sample_em"] = target("sdegen.samplers.em.sample_em")


class PC(_Sampler):
    target_: Literal["sdegen.samplers.pc.sample_pc"] = target("sdegen.samplers.pc.sample_pc")
    predictor: Literal["euler_maruyama", "reverse_diffusion", "ancestral", "none"] = F("predictor step")
    corrector: Literal["langevin", "annealed_langevin", "none"] = F("corrector step")
    corrector_steps: Int(ge=0, le=1000) = F("corrector steps per predictor step")
    snr: Num(gt=0, le=100) = F("target signal-to-noise ratio r of the Langevin step")


class ODE(_Sampler):
    target_: Literal["sdegen.samplers.ode.sample_ode"] = target("sdegen.samplers.ode.sample_ode")
    method: Literal["dopri5", "euler", "heun", "rk4"] = F("dopri5 (adaptive, torchdiffeq) or a fixed-step method")
    rtol: Num(gt=0, lt=1) = F("relative tolerance of dopri5")
    atol: Num(gt=0, lt=1) = F("absolute tolerance of dopri5")


Algorithm = Literal["dpmsolver", "dpmsolver++"]


class DPMSolver(_Sampler):
    target_: Literal["sdegen.samplers.dpm_solver.sample_dpm_solver"] = target(
        "sdegen.samplers.dpm_solver.sample_dpm_solver"
    )
    denoise: Literal[True, False, "half", "auto"] = F("final step: true (Tweedie), half, false, auto (the preset)")
    order: Literal[1, 2, 3] = F("solver order (1: DDIM)")
    algorithm: Algorithm = F("dpmsolver (noise prediction) or dpmsolver++ (data prediction)")
    lower_order_final: bool = F("drop to orders 2, 1 for the last steps")


class DPMSolverSinglestep(_Sampler):
    target_: Literal["sdegen.samplers.dpm_solver_singlestep.sample_dpm_solver_singlestep"] = target(
        "sdegen.samplers.dpm_solver_singlestep.sample_dpm_solver_singlestep"
    )
    order: Literal[1, 2, 3] = F("solver order: score evaluations per grid interval")
    algorithm: Algorithm = F("dpmsolver (noise prediction) or dpmsolver++ (data prediction)")


class DPMSolverSDE(_Sampler):
    target_: Literal["sdegen.samplers.dpm_solver_sde.sample_dpm_solver_sde"] = target(
        "sdegen.samplers.dpm_solver_sde.sample_dpm_solver_sde"
    )
    order: Literal[1, 2] = F("solver order (2: SDE-DPM-Solver++(2M))")
    s_noise: Num(ge=0, le=10) = F("scale of the fresh noise")


class Heun(_Sampler):
    target_: Literal["sdegen.samplers.heun.sample_heun"] = target("sdegen.samplers.heun.sample_heun")
    s_churn: Num(ge=0, le=1e6) | Auto = F("EDM Alg. 2 churn (0: Alg. 1; auto: the preset)")
    s_tmin: Num(ge=0) | Auto = F("churn only while s_tmin ≤ σ/α ...")
    s_tmax: Num(ge=0, allow_inf_nan=True) | Auto = F("... ≤ s_tmax (.inf: no upper limit)")
    s_noise: Num(ge=0, le=10) | Auto = F("std factor of the added noise")


class Restart(_Sampler):
    target_: Literal["sdegen.samplers.restart.sample_restart"] = target("sdegen.samplers.restart.sample_restart")
    restarts: Annotated[
        list[Annotated[list[Num(ge=0, le=1e6)], Field(min_length=4, max_length=4)]], Field(max_length=100)
    ] = F("restart intervals [n Heun steps, K passes, s_min, s_max] (σ/α)")
    rho: Num(gt=0, le=100) = F("EDM grid exponent inside restart intervals")
    s_noise: Num(ge=0, le=10) = F("scale of the forward jump's noise")


class UniPC(_Sampler):
    target_: Literal["sdegen.samplers.unipc.sample_unipc"] = target("sdegen.samplers.unipc.sample_unipc")
    order: Literal[1, 2, 3] = F("predictor order (the corrector adds one)")
    variant: Literal["bh1", "bh2"] = F("B(h) = h (bh1) or e^h − 1 (bh2)")
    algorithm: Algorithm = F("dpmsolver (noise prediction) or dpmsolver++ (data prediction)")
    corrector: bool | Auto = F("UniC corrector, no extra NFE (auto: the preset)")
    lower_order_final: bool = F("the last steps drop to orders 2, 1")


class OtherSampler(_Sampler):
    """A sampler of configs/sampler/ without a schema of its own: the driver keys typed, its options
    checked against the function's signature."""

    model_config = ConfigDict(extra="allow")
    target_: str = target("")


# --- loss, guidance, task --------------------------------------------------------------------------------------
Reduction = Literal["mean", "sum"]


class EDMLoss(Node):
    name: Literal["edm"] = F("λ ∝ (σ̃² + σ_d²)/σ_d² with ln σ̃ ~ N(p_mean, p_std²), σ̃ = σ/α (Karras et al. 2022)")
    reduction: Reduction = F("mean or sum over data dimensions (the batch is always averaged)")
    data_std: Num(gt=0, le=1e4) = F("σ_d of the weighting: the data's std")
    p_mean: Num(ge=-100, le=100) = F("mean of ln σ̃")
    p_std: Num(gt=0, le=100) = F("std of ln σ̃")


class Sigma2Loss(Node):
    name: Literal["sigma2"] = F("λ = σ², t ~ U(eps, T) of the chosen SDE")
    reduction: Reduction = F("mean or sum over data dimensions (the batch is always averaged)")


class LikelihoodLoss(Node):
    name: Literal["likelihood"] = F("λ = g², t ~ U(eps, T): a bound on the negative log-likelihood")
    reduction: Reduction = F("mean or sum over data dimensions (the batch is always averaged)")


class LikelihoodISLoss(Node):
    name: Literal["likelihood_is"] = F("λ = g² with importance-sampled t")
    reduction: Reduction = F("mean or sum over data dimensions (the batch is always averaged)")


Label = Int(ge=0, le=1_000_000)


class _Guided(Node):
    label: Label | Annotated[list[Label], Field(min_length=1, max_length=MAX_SAMPLES)] | Literal["all", "random"] = F(
        "class: an integer, a list (spread over the batch in blocks), all (one row per class) or random"
    )


class NoGuidance(Node):
    name: Literal["none"] = F("unguided sampling")


class CFGGuidance(_Guided):
    name: Literal["cfg"] = F("classifier-free guidance (1 + w) s(x,t,y) − w s(x,t,∅)")
    scale: Num(ge=-1, le=1000) = F("w; 0: the conditional model alone, -1: the unconditional one")


class ClassifierGuidance(_Guided):
    name: Literal["classifier"] = F("classifier guidance: score + w ∇_x log p_φ(y | x_t, t)")
    scale: Num(ge=0, le=1000) = F("w; 1: Bayes' rule, > 1: sharper classes")
    classifier_ckpt: Text | None = F("`sdegen train task=classifier` checkpoint (null with model=gmm: exact)")


class GenerateTask(Node):
    name: Literal["generate"] = F("train / draw from a score model")


class ClassifierNet(Node):
    depth: Literal[tuple(range(10, 107, 6))] = F("Wide-ResNet depth 6n + 4 (10, 16, 22, 28 ...)")
    widen_factor: Int(ge=1, le=64) = F("Wide-ResNet width multiplier")
    dropout: Num(ge=0, lt=1) = F("dropout probability")
    embed_dim: Int(ge=2, le=8192) = F("size of the time embedding")
    fourier_scale: Num(gt=0, le=1e4) = F("std of the random Fourier frequencies")
    time_input: TimeInput = F("time input: t, log σ(t), or auto (log σ for VE)")


class ClassifierOptim(Node):
    lr: Num(gt=0, le=10) = F("learning rate")
    weight_decay: Num(ge=0, le=10) = F("AdamW weight decay")
    warmup: Int(ge=0, le=MAX_TRAIN_STEPS) = F("linear warm-up steps")


class ClassifierEval(Node):
    n_points: Int(ge=1, le=MAX_SAMPLES) = F("test images")
    split: Split = F("data split")
    n_times: Int(ge=1, le=10_000) = F("noise levels, uniform in [t_min, T]")


class ClassifierTask(Node):
    name: Literal["classifier"] = F("a time-dependent classifier p_φ(y | x_t, t) (for guidance=classifier)")
    model: ClassifierNet = F("the classifier network")
    optim: ClassifierOptim = F("the classifier's optimiser")
    t_min: Num(gt=0, le=1e6) | None = F("smallest training t (null: the SDE's eps)")
    eval: ClassifierEval = F("sdegen eval task=classifier: accuracy over noise levels")


class Mask(Node):
    kind: Literal["box", "half", "random", "file", "mnist"] = F("mask shape")
    size: Num(gt=0, le=1) = F("box: fraction of H and W (centred)")
    side: Literal["left", "right", "top", "bottom"] = F("half: the missing side")
    fraction: Fraction = F("random: probability a pixel is missing")
    path: Text | None = F("file: image, dark = missing")
    scale: Num(gt=0, le=10) = F("mnist: digit size relative to the image")
    threshold: Fraction | None = F("file/mnist: stroke threshold (null: 0.5 / 0.3)")


class InpaintTask(Node):
    name: Literal["inpaint"] = F("fill the masked region of test images")
    split: Split = F("data split the images come from")
    resample: Int(ge=1, le=1000) = F("RePaint jumps per step (1: plain replacement)")
    fill: Fraction = F("grey level shown in the missing region of the figure (data space, [0, 1])")
    figure_cols: Int(ge=1, le=256) = F("columns of the figure")
    mask: Mask = F("the mask")


class ColorizeTask(Node):
    name: Literal["colorize"] = F("colour grey-scale test images (RGB data)")
    split: Split = F("data split the images come from")
    resample: Int(ge=1, le=1000) = F("RePaint jumps per step")
    figure_cols: Int(ge=1, le=256) = F("columns of the figure")


# --- trainer and loggers ---------------------------------------------------------------------------------------
PRECISION = Literal[(*PRECISIONS, *PRECISION_ALIASES, 64, 32, 16)]  # lightning.Trainer(precision=...)
MaxTime = Annotated[str, Field(pattern=r"^\d{1,4}:\d{1,2}:\d{1,2}:\d{1,2}$")]


class Trainer(OpenNode):
    """Arguments of lightning.pytorch.Trainer; others may be added (``+trainer.key=...``) and are checked
    against its signature."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = F("device kind")
    devices: Int(ge=1, le=4096) | Literal[-1, "auto"] | Annotated[list[Int(ge=0, le=4096)], Field(min_length=1)] = F(
        "number of devices (>= 1), -1 / auto (all), or a list of device indices"
    )
    strategy: Text = F("Lightning strategy: auto, ddp, ddp_spawn, ...")
    num_nodes: Int(ge=1, le=4096) = F("machines")
    precision: PRECISION = F("32-true, bf16-mixed, 16-mixed, ... (Lightning's)")
    max_steps: Int(ge=1, le=MAX_TRAIN_STEPS) | Literal[-1] = F("optimizer steps (-1: no limit)")
    max_time: MaxTime | None = F("DD:HH:MM:SS: stop and checkpoint after this long (null: no limit)")
    max_epochs: Int(ge=1, le=MAX_TRAIN_STEPS) | Literal[-1] | None = F("epochs (-1 or null: no limit)")
    gradient_clip_val: Num(ge=0, le=1e6) | None = F("gradient-norm clipping (interpolated: ${optim.grad_clip})")
    val_check_interval: Int(ge=1, le=MAX_TRAIN_STEPS) | Num(gt=0, le=1) | None = F(
        "validation every N steps (interpolated: ${val_every})"
    )
    check_val_every_n_epoch: Int(ge=1, le=MAX_TRAIN_STEPS) | None = F("validation every N epochs (null: by steps)")
    limit_val_batches: Int(ge=0, le=MAX_TRAIN_STEPS) | Num(ge=0, le=1) | None = F(
        "validation batches (an integer) or fraction"
    )
    num_sanity_val_steps: Int(ge=-1, le=MAX_TRAIN_STEPS) = F("validation batches before training (-1: all)")
    log_every_n_steps: Int(ge=1, le=MAX_TRAIN_STEPS) = F("logging interval in steps")
    enable_progress_bar: bool = F("tqdm progress bar")
    enable_model_summary: bool = F("print the model summary")
    deterministic: bool | Literal["warn"] | None = F("deterministic algorithms")
    benchmark: bool | None = F("cudnn.benchmark")


class CSVLogger(Node):
    target_: Literal["lightning.pytorch.loggers.CSVLogger"] = target("lightning.pytorch.loggers.CSVLogger")
    name: Text = F("sub-folder of the run folder")
    version: str | Int(ge=0) = F("version sub-folder ('' : none)")


class WandbLogger(Node):
    target_: Literal["lightning.pytorch.loggers.WandbLogger"] = target("lightning.pytorch.loggers.WandbLogger")
    project: Text = F("W&B project")
    entity: Text | None = F("W&B entity (null: the default)")
    name: Text | None = F("run name (null: the override string)")
    group: Text | None = F("W&B group")
    tags: list[Text] | None = F("W&B tags")
    log_model: Literal["all", True, False] = F("checkpoints as artifacts: all, true (at the end), false")
    offline: bool = F("always offline")


class Logger(Node):
    csv: CSVLogger | None = F("CSV metrics in <run>/csv/metrics.csv")
    wandb: WandbLogger | None = F("Weights & Biases (offline without an API key or network)")


# --- command-level nodes ----------------------------------------------------------------------------------------
class Optim(Node):
    lr: Num(gt=0) = F("learning rate of Adam")
    betas: Annotated[list[Num(ge=0, lt=1)], Field(min_length=2, max_length=2)] = F("Adam's (β1, β2), each in [0, 1)")
    eps: Num(gt=0, le=1) = F("Adam's ε")
    weight_decay: Num(ge=0, le=10) = F("weight decay")
    warmup: Int(ge=0, le=MAX_TRAIN_STEPS) = F("linear warm-up steps")
    decay: Literal["none", "linear", "cosine"] = F("decay the lr to 0 from decay_start × trainer.max_steps on")
    decay_start: Num(ge=0, lt=1) = F("fraction of trainer.max_steps where the decay starts")
    grad_clip: Num(ge=0, le=1e6) | None = F("gradient-norm clipping (0 or null: none)")


class EMA(Node):
    decay: Num(ge=0, lt=1) | None = F("fixed-decay EMA when sigma_rel is null (both null: no EMA)")
    start_step: Int(ge=0, le=MAX_TRAIN_STEPS) | None = F("first step of the EMA (null: from the start)")
    sigma_rel: Num(gt=0, lt=12**-0.5) | None = F("EDM2 power-function EMA width, in (0, 0.2887); null: decay")


class Checkpointing(Node):
    every_n_steps: Int(ge=1, le=MAX_TRAIN_STEPS) = F("checkpoints/step_XXXXXXX.ckpt every N steps, and last.ckpt")
    keep: Int(ge=1, le=1_000_000) | Literal[-1] = F("-1: keep all periodic checkpoints; k: the newest k")


class SampleGrid(Node):
    every_n_steps: Int(ge=0, le=MAX_TRAIN_STEPS) = F("samples/step_XXXXXXX.png every N steps (0: only at the end)")
    at_end: bool = F("a sample grid at the end of training")
    n_samples: Int(ge=0, le=1024) = F("samples per grid (0: none)")
    seed: Seed = F("seed of the grid's noise")
    sampler: Any = F("the sampler group of the grids: sampler@sample_grid.sampler=NAME")


class _Command(Node):
    dry_run: bool = F("compose, check and print the job(s) without running them")
    seed: Seed = F(f"random seed, 0 to {MAX_SEED}")


class _Modelled(_Command):
    """The groups every command but ``report`` composes (checked by their own schemas, ``GROUPS``)."""

    schedule: Any = F("group")
    sde: Any = F("group")
    model: Any = F("group")
    data: Any = F("group")
    task: Any = F("group")
    logger: Logger = F("group: CSV / W&B loggers")


class _Sampling(_Modelled):
    ckpt: Text | None = F("a `sdegen train` checkpoint or run folder (null: the configured model, e.g. model=gmm)")
    device: Device = F("auto, cpu, mps, cuda or cuda:N")
    n_samples: Int(ge=1, le=MAX_SAMPLES) = F(f"samples drawn, 1 to {MAX_SAMPLES}")
    batch_size: Int(ge=1, le=MAX_BATCH) = F("samples per sampling batch")
    progress: bool = F("tqdm progress bars")
    sampler: Any = F("group")
    guidance: Any = F("group")


class Train(_Modelled):
    threads: Int(ge=1, le=4096) | None = F("torch intra-op threads (null: torch's default)")
    channels_last: bool = F("weights and image batches in channels-last memory format")
    compile: bool = F("torch.compile the network's forward")
    compile_mode: Literal[COMPILE_MODES] = F("torch.compile mode")
    loss: Any = F("group")
    optim: Optim = F("optimiser")
    ema: EMA = F("exponential moving average of the weights (used for validation, samples, checkpoints)")
    val_every: Int(ge=1, le=MAX_TRAIN_STEPS) = F("validation loss (EMA weights) every N steps")
    checkpoint: Checkpointing = F("checkpoints")
    sample_grid: SampleGrid = F("sample grids during training")
    resume: Text | None = F("a run folder or checkpoint to continue (its stored config; command-line keys override)")
    trainer: Trainer = F("group: arguments of lightning.Trainer")


class Sample(_Sampling):
    snapshot_every: Int(ge=1, le=MAX_STEPS) | None = F("trajectory snapshot every k steps (null: steps // 10)")
    evolution_rows: Int(ge=1, le=1024) = F("samples (rows) shown in evolution.png")
    compare: Text | Annotated[list[Text], Field(min_length=1, max_length=32)] | None = F(
        "samplers for compare.png, e.g. [pc,em,ode,dpm_solver] (same initial noise)"
    )


Metric = Literal["fid", "kid", "pr", "is", "bpd", "gap", "all"]


class BPD(Node):
    n_points: Int(ge=1, le=MAX_SAMPLES) = F("test points whose bits/dim are computed")
    split: Split = F("data split of the test points")
    batch_size: Int(ge=1, le=MAX_BATCH) = F("points per likelihood batch")
    trace: Literal["exact", "hutchinson", "auto"] = F("divergence: exact, hutchinson, auto (exact up to exact_max_dim)")
    exact_max_dim: Int(ge=1, le=1_000_000) = F("largest dimension with the exact trace under auto")
    probe: Literal["rademacher", "gaussian"] = F("Hutchinson probe distribution")
    n_probes: Int(ge=1, le=1000) = F("probes per solve, averaged (their spread gives bpd_se)")
    method: Literal["dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"] = F("torchdiffeq adaptive solver")
    rtol: Num(gt=0, lt=1) = F("relative tolerance of the solver")
    atol: Num(gt=0, lt=1) = F("absolute tolerance of the solver")
    eps: Num(gt=0, le=1e6) | None = F("start time of the ODE (null: the SDE's eps)")
    dtype: Literal["auto", "float32", "float64"] = F("auto: float64 for non-image data, float32 for images")


class EvalOptions(Node):
    features: Literal["auto", "inception", "raw"] = F("feature space: inception (images), raw, or auto")
    inception_weights: Text | None = F("torch-fidelity .pth state dict or TorchScript .pt (null: cache / pinned)")
    trust_torchscript: bool = F("allow a TorchScript inception_weights other than the pinned file")
    inception_download: bool = F("try to download torch-fidelity's weights first")
    mnist_root: Text | None = F("torchvision root with MNIST/raw: the reference is the full 10k test split")
    ref_split: Split = F("real split of the reference when mnist_root is not used")
    ref_size: Int(ge=1, le=MAX_SAMPLES) = F("real samples of the reference (clipped to the split)")
    cache_dir: Text | None = F("reference-feature cache (null: $SDEGEN_CACHE/fid_ref)")
    kid_subsets: Int(ge=1, le=100_000) = F("KID: random subsets")
    kid_subset_size: Int(ge=2, le=MAX_SAMPLES) | None = F("KID: subset size (clipped to the smaller set)")
    pr_k: Int(ge=1, le=1000) = F("precision/recall: k-th nearest-neighbour radius")
    is_splits: Int(ge=1, le=1000) = F("Inception Score splits")
    classifier_ckpt: Text | None = F("time-dependent classifier: metrics in its features, accuracy of labelled samples")
    judge: Text | None = F("MNIST digit judge state dict (needs mnist_root)")
    bpd: BPD = F("bits/dim (metric=bpd)")


class Eval(_Sampling):
    metric: Metric | Annotated[list[Metric], Field(min_length=1)] = F("fid, kid, pr, is, bpd, gap, all, or a list")
    samples: Text | None = F("a samples.npz of `sdegen sample` to evaluate instead of generating")
    eval: EvalOptions = F("metric options")


class Report(Node):
    run_dir: Text = F("a run or multirun folder")
    out_dir: Text | None = F("output folder (null: <run_dir>/report)")
    first_epochs: Int(ge=1, le=100_000) = F("bar chart of the mean training loss over the first N epochs")


# --- dispatch ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """A config group whose node is checked by the model of its choice (``key``: ``_target_`` or ``name``)."""

    name: str
    key: str
    choices: tuple
    fallback: type | None = None

    def models(self) -> dict:
        return {_choice_value(m, self.key): m for m in self.choices}


def _choice_value(model: type, key: str):
    field = model.model_fields["target_" if key == "_target_" else key]
    return typing.get_args(field.annotation)[0]


GROUPS = {
    "schedule": Group("schedule", "_target_", (LinearSchedule, CosineSchedule, GeometricSigma)),
    "sde": Group("sde", "_target_", (VPSDE, SubVPSDE, VESDE)),
    "model": Group("model", "_target_", (ScoreNet, NCSNpp, GMMScore)),
    "data": Group("data", "_target_", (EmbeddedMNIST, MNIST, CIFAR10, NpzImages, ImageFolder, GMMData)),
    "sampler": Group(
        "sampler",
        "_target_",
        (EM, PC, ODE, DPMSolver, DPMSolverSinglestep, DPMSolverSDE, Heun, Restart, UniPC),
        fallback=OtherSampler,
    ),
    "loss": Group("loss", "name", (EDMLoss, Sigma2Loss, LikelihoodLoss, LikelihoodISLoss)),
    "guidance": Group("guidance", "name", (NoGuidance, CFGGuidance, ClassifierGuidance)),
    "task": Group("task", "name", (GenerateTask, ClassifierTask, InpaintTask, ColorizeTask)),
}

#: each command: its top-level model and {key path: group} of the grouped nodes
COMMANDS = {
    "train": (
        Train,
        {
            "schedule": "schedule",
            "sde": "sde",
            "sde.schedule": "schedule",
            "model": "model",
            "data": "data",
            "task": "task",
            "loss": "loss",
            "sample_grid.sampler": "sampler",
        },
    ),
    "sample": (
        Sample,
        {
            "schedule": "schedule",
            "sde": "sde",
            "sde.schedule": "schedule",
            "model": "model",
            "data": "data",
            "sampler": "sampler",
            "guidance": "guidance",
            "task": "task",
        },
    ),
    "eval": (
        Eval,
        {
            "schedule": "schedule",
            "sde": "sde",
            "sde.schedule": "schedule",
            "model": "model",
            "data": "data",
            "sampler": "sampler",
            "guidance": "guidance",
            "task": "task",
        },
    ),
    "report": (Report, {}),
}


# --- messages ---------------------------------------------------------------------------------------------------
def show(value) -> str:
    """A value as the user typed it (YAML spelling: null, true, [2, 3])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _bare(value) -> str:
    return show(value).strip("'") if isinstance(value, str) else show(value)


def _join(parts: list[str], word: str = "or") -> str:
    parts = list(dict.fromkeys(p for p in parts if p))
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {word} " + parts[-1]


def _number(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    return str(value)


def _limits(meta) -> list[str]:
    out = []
    for m in meta:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(m, attr, None)
            if isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt, FieldInfo)) and bound is not None:
                out.append(f"{sign} {_number(bound)}")
        if isinstance(m, FieldInfo):
            out += _limits(m.metadata)
    return out


def _lengths(meta) -> tuple:
    lo = hi = None
    for m in meta:
        if isinstance(m, FieldInfo):
            lo2, hi2 = _lengths(m.metadata)
            lo, hi = lo2 if lo2 is not None else lo, hi2 if hi2 is not None else hi
        lo = getattr(m, "min_length", None) if isinstance(m, at.MinLen) else lo
        hi = getattr(m, "max_length", None) if isinstance(m, at.MaxLen) else hi
    return lo, hi


def _pattern(meta) -> str | None:
    for m in meta:
        if isinstance(m, FieldInfo):
            found = _pattern(m.metadata)
            if found:
                return found
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


PATTERN_TEXT = {
    r"^(auto|cpu|mps|cuda(:\d+)?)$": "auto, cpu, mps, cuda or cuda:N",
    r"^\d{1,4}:\d{1,2}:\d{1,2}:\d{1,2}$": "a time DD:HH:MM:SS",
}


def describe(tp, meta=()) -> str:
    """What ``tp`` (with constraints ``meta``) allows, in words: 'an integer >= 1 and <= 100000'."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *more = typing.get_args(tp)
        return describe(base, (*meta, *more))
    if origin in (Union, types.UnionType):
        members = typing.get_args(tp)
        literals = [a for a in members if typing.get_origin(a) is Literal]
        values = ["true", "false"] if bool in members else []
        values = list(dict.fromkeys([*values, *(_bare(v) for lit in literals for v in typing.get_args(lit))]))
        lists_of_them = [a for a in members if _list_item(a) in literals]
        others = [
            describe(a)
            for a in members
            if typing.get_origin(a) is not Literal and a not in lists_of_them and a is not bool
        ]
        if lists_of_them and not others:
            return "one of " + ", ".join(values) + ", or a list of them"
        return _join([*others, *values])
    if origin is Literal:
        values = list(dict.fromkeys(_bare(v) for v in typing.get_args(tp)))
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true or false"
    if tp is Any:
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping with keys " + ", ".join(_key(n, f) for n, f in tp.model_fields.items())
    if origin is list:
        (item,) = typing.get_args(tp)
        lo, hi = _lengths(meta)
        count = (
            f"{lo} "
            if lo == hi and lo is not None
            else f"1 to {hi} "
            if lo == 1 and hi is not None
            else "1 or more "
            if lo == 1
            else f"up to {hi} "
            if hi is not None
            else ""
        )
        inner = describe(item)
        inner = inner.replace("an integer", "integers").replace("a number", "numbers").replace("a string", "strings")
        inner = inner.replace("a list of", "lists of").replace("one of", "each one of")
        return f"a list of {count}{inner}"
    if origin is dict:
        return "a mapping"
    pattern = _pattern(meta)
    if pattern:
        return PATTERN_TEXT.get(pattern, f"a string matching {pattern}")
    word = {int: "an integer", float: "a number", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))
    limits = _limits(meta)
    return (
        word
        + (" " + " and ".join(limits) if limits else "")
        + (" (non-empty)" if tp is str and not limits and _lengths(meta)[0] else "")
    )


def _list_item(tp):
    """The item type of a list type (``Annotated`` stripped), else None."""
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return typing.get_args(tp)[0] if typing.get_origin(tp) is list else None


def _key(name: str, field: FieldInfo) -> str:
    return field.alias or name


def field_text(field: FieldInfo) -> str:
    return describe(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


def _fields_by_key(model: type) -> dict:
    """``{config key: field}`` of a node, ``_target_`` or ``name`` first."""
    fields = {_key(n, f): f for n, f in model.model_fields.items()}
    return dict(sorted(fields.items(), key=lambda kv: kv[0] not in ("_target_", "name")))


def _inner_model(field: FieldInfo):
    candidates = [field.annotation, *typing.get_args(field.annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _lookup(data, path):
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _message(model: type, error: dict, data: dict, prefix: str) -> str | None:
    """One line for one pydantic error: the key, the value, what is allowed."""
    if error["type"] == "missing":
        return None  # keys absent from a (stored) config take the code's defaults
    loc, path, current, field, skipped = list(error["loc"]), [], model, None, []
    for i, part in enumerate(loc):
        fields = _fields_by_key(current) if current is not None else {}
        if current is not None and part == current.__name__ and path:
            skipped.append(i)  # the union member that is a node (e.g. grid_options: GridOptions | auto)
            continue
        if part not in fields:
            break
        path.append(part)
        field = fields[part]
        current = _inner_model(field)
    where = prefix + ".".join(str(p) for p in path)
    if error["type"] == "extra_forbidden":
        loc = [p for i, p in enumerate(loc) if i not in skipped]
        owner = current if len(path) == len(loc) - 1 else None
        key = f"{where}.{loc[len(path)]}" if path else prefix + str(loc[len(path)])
        valid = ", ".join(_fields_by_key(owner or model)) if (owner or not path) else ""
        return f"{key} is not a config key" + (f"; valid keys here: {valid}" if valid else "")
    if field is None:
        return f"{prefix.rstrip('.') or 'config'}: {error['msg']}"
    return f"{where} must be {field_text(field)} (got {show(_lookup(data, path))})"


def _check_model(model: type, data, prefix: str) -> list[str]:
    if not isinstance(data, dict):
        return [f"{prefix.rstrip('.')} must be a mapping (got {show(data)})"]
    try:
        model.model_validate(data)
    except ValidationError as err:
        return [m for m in (_message(model, e, data, prefix) for e in err.errors()) if m]
    return []


def _check_group(group: Group, data, path: str) -> list[str]:
    if data is None:
        return []
    if not isinstance(data, dict):
        return [f"{path} must be a mapping (got {show(data)}); choose it with {group.name}=NAME"]
    models = group.models()
    choice = data.get(group.key)
    model = models.get(choice) if isinstance(choice, str) else None
    if model is None and group.fallback is not None and isinstance(choice, str):
        from .registry import targets

        model = group.fallback if choice in targets() else None
    if model is None:
        allowed = ", ".join(str(k) for k in models)
        return [f"{path}.{group.key} must be one of {allowed} (got {show(choice)})"]
    return _check_model(model, data, path + ".")


def _plain(cfg) -> dict:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return _drop_missing(cfg)


def _drop_missing(node):
    if isinstance(node, dict):
        return {k: _drop_missing(v) for k, v in node.items() if v != "???"}
    if isinstance(node, list):
        return [_drop_missing(v) for v in node]
    return node


def problems(cfg, command: str) -> list[str]:
    """Every violation of ``command``'s schema in ``cfg`` (composed config or plain data), one line each."""
    if command not in COMMANDS:
        raise UserError(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
    data = _plain(cfg)
    data.pop("hydra", None)
    root, grouped = COMMANDS[command]
    found = _check_model(root, data, "")
    for path, name in grouped.items():
        found += _check_group(GROUPS[name], _lookup(data, path.split(".")), path)
    return list(dict.fromkeys(found))


def validate(cfg, command: str) -> dict:
    """``cfg`` (a composed config or plain data) checked against ``command``'s schema: the plain config, or a
    ``UserError`` with the first violation in one line."""
    found = problems(cfg, command)
    if found:
        raise UserError(found[0])
    return _plain(cfg)


#: stored configs of older checkpoints: loss.weighting is the loss group's name, loss.sigma_data its data_std
LEGACY_LOSS = {"weighting": "name", "sigma_data": "data_std"}


def upgrade_stored(cfg: dict) -> dict:
    """A checkpoint's stored config with older spellings mapped to the current keys (a copy)."""
    import copy

    cfg = copy.deepcopy(cfg)
    loss = cfg.get("loss")
    if isinstance(loss, dict) and "weighting" in loss:
        loss = {LEGACY_LOSS.get(k, k): v for k, v in loss.items()}
        if loss.get("name") != "edm":
            loss = {k: v for k, v in loss.items() if k in ("name", "reduction")}
        cfg["loss"] = loss
    model = cfg.get("model")
    if isinstance(model, dict) and "sigma_data" in model:  # the edm preconditioning's σ_d is model.data_std
        model["data_std"] = model.pop("sigma_data")
    for node in (cfg.get("sampler"), (cfg.get("sample_grid") or {}).get("sampler")):
        if isinstance(node, dict):
            node.pop("by_steps", None)
    return cfg


def validate_stored(cfg_dict: dict, source: str | None = None) -> dict:
    """A checkpoint's stored config (plain data, as ``sdegen train`` stores it) checked by the train schema,
    with older spellings mapped first; returns the mapped config.  ``UserError`` (one line, prefixed with
    ``source`` when given) for the first violation, e.g. a ``_target_`` that is not one of sdegen's."""
    if not isinstance(cfg_dict, dict):
        raise UserError(
            f"{source + ': ' if source else ''}the stored config is not a mapping (got {type(cfg_dict).__name__})"
        )
    cfg = upgrade_stored(cfg_dict)
    found = problems(cfg, "train")
    if found:
        raise UserError(f"{source + ': ' if source else ''}stored config: {found[0]}")
    return cfg


# --- the configuration reference (docs/configuration.md) -------------------------------------------------------
READERS = {
    "schedule": "train, sample, eval",
    "sde": "train, sample, eval",
    "model": "train, sample, eval",
    "data": "train, sample, eval",
    "sampler": "sample, eval (train: sample_grid.sampler)",
    "loss": "train",
    "guidance": "sample, eval",
    "task": "train, sample, eval",
}

VOCABULARY = [
    (
        "data_std",
        "the data's root-mean-square per-dimension standard deviation (loss.data_std, model.data_std, "
        "sampler.data_std, recorded in checkpoints)",
    ),
    ("labels", "class labels of samples and data (samples.npz `labels`, guidance.label chooses them)"),
    ("nfe", "score-network evaluations per sample (metrics `nfe`)"),
    ("batch_size", "items per batch: data.batch_size for training, batch_size for sampling and metrics"),
    ("seed", "the random seed of a command (seed=, default 0); data.seed and sample_grid.seed seed their own streams"),
]


def _rows(model: type, defaults, prefix: str, reader: str, skip=()) -> list[str]:
    rows = []
    for key, field in _fields_by_key(model).items():
        if key in skip or (field.description or "").startswith("group"):
            continue
        inner = _inner_model(field)
        value = defaults.get(key, "") if isinstance(defaults, dict) else ""
        if inner is not None and inner is not GridOptions:
            rows += _rows(inner, value if isinstance(value, dict) else {}, f"{prefix}{key}.", reader)
            continue
        if field.annotation is Any:
            continue
        default = "" if isinstance(defaults, dict) and key not in defaults else f"`{_bare(value)}`"
        cells = [f"`{prefix}{key}`", reader, default, field_text(field), field.description or ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


HEADER = ["| key | read by | default | allowed | meaning |", "|---|---|---|---|---|"]


def markdown() -> str:
    """``docs/configuration.md``: every key of every command and group (defaults from configs/)."""
    from omegaconf import OmegaConf

    from .registry import TASKS, config_dir, group_choices

    root = config_dir()
    lines = [
        "# Configuration reference",
        "",
        "Generated from the typed schema (`src/sdegen/runtime/schema.py`) by",
        "`python -m sdegen.runtime.schema --markdown > docs/configuration.md`; defaults are those of `configs/`.",
        "Every key is checked once, after composition and before any work: a wrong type, a value out of range,",
        "an unknown choice or an unknown key is one line `sdegen: error: ...` and exit status 2, with nothing",
        "written.",
        "",
        "## Vocabulary",
        "",
        "One name per concept, everywhere (configs, code, files, docs):",
        "",
    ]
    lines += [f"- **{word}**: {text}" for word, text in VOCABULARY]
    for command in ("train", "sample", "eval", "report"):
        model, grouped = COMMANDS[command]
        defaults = OmegaConf.to_container(OmegaConf.load(root / f"{command}.yaml"), resolve=False)
        defaults.pop("defaults", None)
        lines += [
            "",
            f"## sdegen {command}",
            "",
            f"Keys of `configs/{command}.yaml`"
            + (f"; groups: {', '.join(sorted(set(grouped.values())))} (below)" if grouped else "")
            + ".",
            "",
        ]
        lines += HEADER + _rows(model, defaults, "", command, skip=("sample_grid.sampler",))
    for name, group in GROUPS.items():
        lines += [
            "",
            f"## {name}",
            "",
            f"Chosen with `{name}=NAME`; read by {READERS[name]}; each choice is checked by its `{group.key}`.",
        ]
        by_value = group.models()
        for choice in group_choices(name):
            defaults = OmegaConf.to_container(OmegaConf.load(root / name / f"{choice}.yaml"), resolve=False)
            defaults.pop("defaults", None)
            model = by_value.get(defaults.get(group.key), group.fallback)
            if model is None:
                continue
            readers = ", ".join(c for c, tasks in TASKS.items() if choice in tasks) if name == "task" else READERS[name]
            lines += ["", f"### {name}={choice}", ""] + HEADER
            lines += _rows(model, defaults, f"{name}.", readers.split(" (")[0])
    trainer_defaults = OmegaConf.to_container(OmegaConf.load(root / "trainer" / "default.yaml"), resolve=False)
    trainer_defaults.pop("defaults", None)
    lines += (
        [
            "",
            "## trainer",
            "",
            "Chosen with `trainer=default|cpu|gpu|ddp`; read by train.  Arguments of",
            "`lightning.Trainer`: other arguments may be added with `+trainer.KEY=VALUE` (checked against its",
            "signature).",
            "",
        ]
        + HEADER
        + _rows(Trainer, trainer_defaults, "trainer.", "train")
    )
    logger_defaults: dict = {}
    for choice in ("csv", "wandb"):
        logger_defaults.update(OmegaConf.to_container(OmegaConf.load(root / "logger" / f"{choice}.yaml")))
    lines += ["", "## logger", "", "Chosen with `logger=default|csv|wandb|none`; read by train, sample, eval.", ""]
    lines += HEADER + _rows(Logger, logger_defaults, "logger.", "train, sample, eval")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        print("usage: python -m sdegen.runtime.schema --markdown > docs/configuration.md", file=sys.stderr)
        raise SystemExit(2)
    sys.stdout.write(markdown())
