"""Figures shared by the commands: sample grids, trajectory evolution, sampler comparisons.

Conventions: image batches are either float arrays/tensors N×C×H×W in *data space* (images in
[0, 1]) or uint8 arrays N×H×W×C; ``to_uint8_images`` converts the first into the second.
Non-image data (the Gaussian-mixture test bed) is drawn as 2-D point clouds: pass an array of
shape (N, 2) (see ``project_2d``) wherever images are accepted.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def to_uint8_images(x, value_range=(0.0, 1.0)) -> np.ndarray:
    """N×C×H×W floats in data space → N×H×W×C uint8 (values clipped to ``value_range``).

    ``value_range=None`` stretches the batch's own 1st–99th percentiles (for non-image data).
    A single C×H×W image is accepted too (N = 1).
    """
    x = _numpy(x).astype(np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected N×C×H×W (or C×H×W) images, got shape {x.shape}")
    if value_range is None:
        lo, hi = np.percentile(x, [1, 99]) if x.size else (0.0, 1.0)
        value_range = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    lo, hi = value_range
    scaled = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return np.round(scaled * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """N×H×W×C uint8 → one (rows·(H+p)+p)×(nrow·(W+p)+p)×C uint8 mosaic, ``nrow`` images per row."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected N×H×W×C images, got shape {images.shape}")
    n, h, w, c = images.shape
    nrow = max(1, min(n, nrow or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def save_grid(images, path, nrow: int | None = None, padding: int = 2) -> Path:
    """Save N×H×W×C uint8 images as one PNG mosaic (``nrow`` per row; default ≈ √N)."""
    from PIL import Image

    grid = make_grid(np.asarray(images), nrow, padding)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def project_2d(x, basis=None) -> np.ndarray:
    """Flattened N×D data → N×2 points: the first two coordinates, or ``x @ basis`` for a D×2 basis."""
    flat = _numpy(x).reshape(len(x), -1).astype(np.float64)
    if basis is not None:
        return flat @ np.asarray(basis, dtype=np.float64)
    return flat[:, :2] if flat.shape[1] >= 2 else np.concatenate([flat, np.zeros_like(flat)], 1)


def _is_points(a) -> bool:
    a = np.asarray(a)
    return a.ndim == 2 and a.shape[1] == 2


def _draw(ax, panel, nrow, limits=None, reference=None):
    ax.set_xticks([])
    ax.set_yticks([])
    if _is_points(panel):
        if reference is not None:
            ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.8", linewidths=0)
        ax.scatter(panel[:, 0], panel[:, 1], s=2, c="C0", linewidths=0)
        if limits is not None:
            ax.set_xlim(*limits[0])
            ax.set_ylim(*limits[1])
        ax.set_aspect("equal", adjustable="box")
    else:
        grid = make_grid(np.asarray(panel), nrow)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
        ax.set_frame_on(False)


def _limits(panels, reference=None):
    pts = [np.asarray(p) for p in panels if _is_points(p)] + ([reference] if reference is not None else [])
    if not pts:
        return None
    allp = np.concatenate(pts)
    lo, hi = np.percentile(allp, 0.5, axis=0), np.percentile(allp, 99.5, axis=0)
    pad = 0.05 * (hi - lo + 1e-9)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def evolution_figure(snapshots, times, path, *, rows: int = 8, reference=None, title: str | None = None) -> Path:
    """Trajectory snapshots from noise (left) to samples (right), one column per snapshot
    (thesis Fig. 4.1).

    ``snapshots``: list of uint8 N×H×W×C image batches (the first ``rows`` images are stacked as
    a column, one row per sample) or of N×2 point clouds (one scatter per time, with an
    optional N×2 ``reference`` cloud in grey).  ``times`` label the columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(snapshots)
    if n == 0:
        raise ValueError("evolution_figure needs at least one snapshot")
    points = _is_points(snapshots[0])
    reference = None if reference is None else np.asarray(reference)
    limits = _limits(snapshots[-1:], reference) if points else None  # axes of the data, not the noise
    width = 1.6 if points else 1.0
    fig, axes = plt.subplots(
        1, n, figsize=(width * n + 0.4, 1.9 if points else 0.9 * min(rows, len(snapshots[0])) + 0.5), squeeze=False
    )
    for ax, snap, t in zip(axes[0], snapshots, times):
        if points:
            _draw(ax, np.asarray(snap), 1, limits if snap is snapshots[-1] else _limits([snap]), reference)
        else:
            _draw(ax, np.asarray(snap)[:rows], 1)
        ax.set_title(f"t={t:.3g}", fontsize=7)
    return _save_figure(fig, path, title, fontsize=9)


def comparison_figure(panels: dict, path, *, nrow: int | None = None, reference=None, title: str | None = None) -> Path:
    """One panel per entry of ``panels`` (name → uint8 N×H×W×C images or N×2 points), side by side
    (thesis Fig. 4.2: the same initial noise through different samplers).  Point panels share
    axes and may show a grey ``reference`` cloud (e.g. exact samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("comparison_figure needs at least one panel")
    reference = None if reference is None else np.asarray(reference)
    limits = _limits(list(panels.values()), reference)
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.3), squeeze=False)
    for ax, (name, panel) in zip(axes[0], panels.items()):
        _draw(ax, np.asarray(panel), nrow, limits, reference)
        ax.set_title(str(name), fontsize=9)
    return _save_figure(fig, path, title, fontsize=10)


def _save_figure(fig, path, title=None, fontsize=9) -> Path:
    """Title, tight layout, save as PNG (creating folders), close."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
