"""A digit judge for MNIST samples: a plain CNN trained on the 60k MNIST training digits, and the
figures it gives a set of 28×28 digits (``scripts/digit_judge.py`` is the command line).

- **Fréchet distance** between Gaussians fitted to the judge's 128-d penultimate features of the
  samples and of the real test digits (the FID formula, Heusel et al. 2017, Eq. 6):
  ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{½} Σ₂ Σ₁^{½})^{½}).
- **Confident share**: fraction of samples whose top class probability exceeds 0.9.
- **Class balance**: entropy of the predicted-class histogram divided by log K (1 = uniform).
- **Inception score in the judge's class space** (Salimans et al. 2016, with the judge as the
  classifier): exp(E_x KL(p(y|x) ‖ p(y))), p(y) = E_x p(y|x); from 1 (every digit gets the same
  class distribution) to K = 10 (confident and balanced).
- **Nearest-training-neighbour distance** (memorisation check): Euclidean pixel distance (pixels in
  [0, 1]) from each sample to its nearest training digit; a sample is counted as a *copy* when that
  distance is below ``copy_threshold`` (far below what fresh real digits get, see the CLI's
  reference row).

Everything but ``DigitJudge`` is a pure function of arrays so it can be checked against closed forms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# --- data -----------------------------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST distribution format: big-endian dims after a 4-byte magic)."""
    raw = Path(path).read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64) from ``root/MNIST/raw`` (torchvision layout)."""
    raw = Path(root) / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    if not images.exists():
        from ..errors import UserError

        raise UserError(f"{images} not found: pass --data DIR with DIR/MNIST/raw holding the MNIST IDX files")
    return read_idx(images), read_idx(labels).astype(np.int64)


def to_unit_nchw(images) -> torch.Tensor:
    """uint8 (N, H, W[, 1]) or (N, 1, H, W), or float in [0, 1] -> float32 (N, 1, H, W) in [0, 1]."""
    x = torch.as_tensor(np.array(images))  # a copy: npz/IDX buffers are read-only
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] == 1 and x.shape[1] != 1:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1:] != (1, 28, 28):
        from ..errors import UserError

        raise UserError(f"the digit judge takes 28×28 grey digits, got images of shape {tuple(x.shape[1:])}")
    return x.clamp(0, 1).contiguous()


# --- the judge network ----------------------------------------------------------------------------
class DigitJudge(nn.Module):
    """conv3-32 → pool → conv3-64 → pool → fc-128 (the features) → fc-10.  Input: (N, 1, 28, 28) in [0, 1]."""

    feature_dim = 128

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - MNIST_MEAN) / MNIST_STD
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, 128) float64, class probabilities (N, 10) float64)."""
        self.eval()
        feats, probs = [], []
        for chunk in torch.split(x, batch_size):
            f = self.features(chunk)
            feats.append(f.double())
            probs.append(torch.softmax(self.fc2(f), dim=1).double())
        return torch.cat(feats), torch.cat(probs)


def load_judge(path: str | Path) -> DigitJudge:
    path = Path(path)
    if not path.exists():
        from ..errors import UserError

        raise UserError(f"no digit judge at {path}: train one with `python scripts/digit_judge.py train`")
    judge = DigitJudge()
    try:
        judge.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - a pickle payload, a corrupt file or another network's weights
        from ..errors import UserError

        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
        raise UserError(
            f"{path} is not a digit judge's state dict ({type(err).__name__}: {reason}); refused without "
            f"running it; train one with `python scripts/digit_judge.py train`"
        ) from None
    return judge.eval()


# --- pure figures ---------------------------------------------------------------------------------
def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of (N, D) features, float64."""
    f = torch.as_tensor(features, dtype=torch.float64)
    return f.mean(0), torch.cov(f.T)


def reference_stats(judge: DigitJudge, images) -> tuple[torch.Tensor, torch.Tensor]:
    """``gaussian_stats`` of the judge's features of real digits (uint8 or [0, 1]): the Fréchet reference."""
    return gaussian_stats(judge.embed(to_unit_nchw(images))[0])


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½} (symmetric form of tr (Σ₁Σ₂)^{½})."""
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    cov1, cov2 = torch.as_tensor(cov1, dtype=torch.float64), torch.as_tensor(cov2, dtype=torch.float64)
    root1 = _sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)


def confident_share(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of rows whose largest class probability exceeds ``threshold``."""
    return float((torch.as_tensor(probs).max(dim=1).values > threshold).double().mean())


def class_balance(predicted: torch.Tensor, num_classes: int = 10) -> float:
    """Normalised entropy H(p)/log K of the histogram of predicted classes (1 = perfectly uniform)."""
    counts = torch.bincount(torch.as_tensor(predicted).long(), minlength=num_classes).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum() / math.log(num_classes)) + 0.0  # + 0.0: no "-0.0" for a single class


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) with p(y) = E_x p(y|x), over all rows of ``probs`` (N, K) at once (one
    split; Salimans et al. 2016, Eq. in Sec. 4).  0·log 0 = 0."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    marginal = p.mean(0, keepdim=True)
    kl = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - marginal.clamp_min(1e-300).log()), torch.zeros_like(p))
    return float(kl.sum(1).mean().exp())


def nearest_neighbour_distances(x: torch.Tensor, train: torch.Tensor, k: int = 1, chunk: int = 500) -> torch.Tensor:
    """Euclidean distances (N, k) from each flattened row of ``x`` to its k nearest rows of ``train``
    (ascending), via ‖a‖² + ‖b‖² − 2ab in float64 chunks."""
    a = torch.as_tensor(x).flatten(1).double()
    b = torch.as_tensor(train).flatten(1).double()
    b2 = b.pow(2).sum(1)
    out = []
    for rows in torch.split(a, chunk):
        d2 = rows.pow(2).sum(1, keepdim=True) + b2[None] - 2 * rows @ b.T
        out.append(d2.clamp_min(0).topk(k, dim=1, largest=False).values.sqrt())
    return torch.cat(out)


COPY_THRESHOLD = 1.0  # pixel-space L2 in [0,1]^784; fresh MNIST digits sit ≈ 4–8 from their nearest training digit


def judge_figures(
    judge: DigitJudge,
    x: torch.Tensor,
    ref_stats: tuple,
    train: torch.Tensor | None = None,
    copy_threshold: float = COPY_THRESHOLD,
) -> dict:
    """Every figure for one set of digits ``x`` (N, 1, 28, 28) in [0, 1]: ``frechet`` (against
    ``ref_stats`` = gaussian_stats of the real test features), ``confident``, ``balance``, ``is`` (the
    judge-space inception score), and with
    ``train``: ``nn_min``, ``nn_p01`` (1st percentile), ``nn_median``, ``copies`` (count below threshold)."""
    feats, probs = judge.embed(x)
    mu, cov = gaussian_stats(feats)
    out = {
        "n": int(x.shape[0]),
        "frechet": frechet_distance(mu, cov, *ref_stats),
        "confident": confident_share(probs),
        "balance": class_balance(probs.argmax(1)),
        "is": inception_score(probs),
        "class_counts": torch.bincount(probs.argmax(1), minlength=10).tolist(),
    }
    if train is not None:
        nn_d = nearest_neighbour_distances(x, train)[:, 0]
        out.update(
            nn_min=float(nn_d.min()),
            nn_p01=float(torch.quantile(nn_d, 0.01)),
            nn_median=float(nn_d.median()),
            copies=int((nn_d < copy_threshold).sum()),
        )
    return out


# --- training -------------------------------------------------------------------------------------
def train_judge(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    shift: int = 2,
    log=print,
) -> DigitJudge:
    """Adam, cosine-decayed learning rate, random ±``shift``-pixel translations (so the judge does not
    hinge on exact centring).  ``images`` (N, 1, 28, 28) in [0, 1]."""
    torch.manual_seed(seed)
    judge = DigitJudge()
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    steps = epochs * math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    judge.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=g)
        total, correct, seen = 0.0, 0, 0
        for idx in torch.split(order, batch_size):
            xb, yb = images[idx], labels[idx]
            if shift:
                dx, dy = torch.randint(-shift, shift + 1, (2,), generator=g).tolist()
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            logits = judge(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f}, train accuracy {correct / seen:.4f}")
    return judge.eval()


@torch.no_grad()
def accuracy(judge: DigitJudge, images: torch.Tensor, labels: torch.Tensor) -> float:
    _, probs = judge.embed(images)
    return float((probs.argmax(1) == labels).double().mean())
