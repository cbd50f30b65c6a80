"""Figure helpers: uint8 conversion, grids, evolution and comparison figures."""

import numpy as np
import pytest
import torch
from PIL import Image

from sdegen import viz


def test_to_uint8_images_clips_and_transposes():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0, 0.25], dtype=torch.float32).reshape(1, 1, 2, 3)
    img = viz.to_uint8_images(x)
    assert img.dtype == np.uint8 and img.shape == (1, 2, 3, 1)
    assert img[0, :, :, 0].tolist() == [[0, 0, 128], [255, 255, 64]]
    rgb = viz.to_uint8_images(np.ones((2, 3, 4, 5), dtype=np.float32))
    assert rgb.shape == (2, 4, 5, 3) and (rgb == 255).all()
    stretched = viz.to_uint8_images(torch.linspace(-3, 3, 100).reshape(1, 1, 10, 10), value_range=None)
    assert stretched.min() == 0 and stretched.max() == 255
    with pytest.raises(ValueError):
        viz.to_uint8_images(np.zeros((2, 3)))


def test_make_grid_places_images():
    images = np.stack([np.full((4, 5, 1), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = viz.make_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 1)
    assert grid[1, 1, 0] == 10 and grid[1, 7, 0] == 20 and grid[6, 1, 0] == 40
    assert grid[6, 13, 0] == 255  # empty slot keeps the padding value


def test_save_grid_writes_png(tmp_path):
    images = (np.random.default_rng(0).random((6, 8, 8, 3)) * 255).astype(np.uint8)
    path = viz.save_grid(images, tmp_path / "g.png", nrow=3)
    with Image.open(path) as im:
        assert im.size == (3 * 10 + 2, 2 * 10 + 2) and im.mode == "RGB"


def test_evolution_and_comparison_figures(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [(rng.random((4, 8, 8, 1)) * 255).astype(np.uint8) for _ in range(3)]
    pts = [rng.normal(size=(100, 2)) for _ in range(3)]
    for name, snaps in (("img", imgs), ("pts", pts)):
        path = viz.evolution_figure(snaps, [1.0, 0.5, 0.001], tmp_path / f"evo_{name}.png", reference=pts[0])
        assert path.stat().st_size > 1000
    path = viz.comparison_figure({"a": imgs[0], "b": imgs[1]}, tmp_path / "cmp.png")
    assert path.stat().st_size > 1000
    path = viz.comparison_figure({"a": pts[0], "b": pts[1]}, tmp_path / "cmp_pts.png", reference=pts[2])
    assert path.stat().st_size > 1000
    points = viz.project_2d(torch.arange(12.0).reshape(3, 1, 2, 2))
    assert points.tolist() == [[0, 1], [4, 5], [8, 9]]
