"""Image data modules: shapes, value ranges, scaling inverse, splits, and real data when available."""

import numpy as np
import pytest
import torch

from sdegen.data.cifar10 import CIFAR10DataModule
from sdegen.data.images import ImageFolderDataModule, NpzDataModule, Scaler
from sdegen.data.mnist import EmbeddedMNISTDataModule, MNISTDataModule


def test_embedded_mnist_data_std():
    """The data's std is the root-mean-square over pixels of each pixel's std across the training images, in
    model space: computed here from the images in float64 with numpy; halved by the [0, 1] scaling."""
    data = EmbeddedMNISTDataModule()
    pixels = data.split("train")[0].numpy().reshape(-1, 28 * 28).astype(np.float64) / 255
    expected = float(np.sqrt(np.mean(np.std(2 * pixels - 1, axis=0) ** 2)))
    assert data.data_std() == pytest.approx(expected, rel=1e-5)
    assert EmbeddedMNISTDataModule(scaling="unit").data_std() == pytest.approx(expected / 2, rel=1e-5)
    # MNIST is mostly background: below the std of uniform pixels in [-1, 1] (1/√3), above half of it
    assert 0.5 / np.sqrt(3) < expected < 1 / np.sqrt(3)


def test_embedded_mnist_loads_offline():
    data = EmbeddedMNISTDataModule(batch_size=16)
    assert data.shape == (1, 28, 28) and data.num_classes == 10 and data.is_image
    train, test = data.split("train"), data.split("test")
    assert train[0].shape == (4500, 1, 28, 28) and test[0].shape == (500, 1, 28, 28)
    assert torch.equal(torch.bincount(test[1]), torch.full((10,), 50))
    assert train[0].dtype == torch.uint8 and train[0].max() == 255 and train[0].min() == 0
    assert 0.10 < train[0].float().mean().item() / 255 < 0.16  # MNIST mean intensity ≈ 0.13
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 and len(set(y.tolist())) > 3
    ref, labels = data.reference(8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(data.unscale(ref) * 255, torch.round(data.unscale(ref) * 255), atol=1e-4)


def test_scaling_and_dequantisation():
    pixels = torch.linspace(0, 1, 11)
    for scaling, lo in (("centered", -1.0), ("unit", 0.0)):
        s = Scaler(scaling)
        assert s.scale(pixels).min().item() == lo and s.scale(pixels).max().item() == 1.0
        assert torch.allclose(s.unscale(s.scale(pixels)), pixels)
    with pytest.raises(ValueError, match="scaling"):
        Scaler("minus_one")
    data = EmbeddedMNISTDataModule(dequantize=True, scaling="unit")
    ds = data.dataset("train")
    images = torch.stack([ds[i][0] for i in range(64)])
    raw = data.split("train")[0][:64].float()
    assert (images * 256 >= raw).all() and (images * 256 < raw + 1).all()  # (k + U[0,1)) / 256
    assert not torch.allclose(images * 256, raw)
    val = data.dataset("test")
    assert torch.equal(val[0][0] * 255, data.split("test")[0][0].float())  # no dequantisation at eval


def test_npz_and_imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(20) % 4)
    data = NpzDataModule(train_file=str(tmp_path / "d.npz"), val_fraction=0.25, batch_size=5)
    assert data.shape == (3, 8, 8) and data.num_classes == 4
    x, y = data.split("train")
    assert x.shape == (15, 3, 8, 8) and torch.equal(x[0], torch.from_numpy(images[0]).permute(2, 0, 1))
    assert data.split("test")[0].shape[0] == 5
    assert next(iter(data.train_dataloader()))[0].shape == (5, 3, 8, 8)
    # the data's std in model space ([-1, 1]), which the samplers' focus grid follows: uniform pixels ≈ 0.58
    scaled = torch.from_numpy(images[:15]).double() / 255 * 2 - 1
    expected = float(scaled.reshape(15, -1).var(0, unbiased=False).mean().sqrt())
    assert data.data_std() == pytest.approx(expected, rel=1e-5) and 0.5 < expected < 0.65
    assert NpzDataModule(
        train_file=str(tmp_path / "d.npz"), val_fraction=0.25, scaling="unit"
    ).data_std() == pytest.approx(expected / 2, rel=1e-5)

    from PIL import Image

    for k in range(2):
        (tmp_path / "folder" / f"c{k}").mkdir(parents=True)
        for i in range(5):
            Image.fromarray(images[k * 5 + i]).save(tmp_path / "folder" / f"c{k}" / f"{i}.png")
    folder = ImageFolderDataModule(root=str(tmp_path / "folder"), image_size=8, val_fraction=0.2)
    assert folder.num_classes == 2 and folder.shape == (3, 8, 8)
    xs, ys = folder.split("train")
    assert xs.shape == (8, 3, 8, 8) and set(ys.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="does not exist"):
        NpzDataModule(train_file=str(tmp_path / "missing.npz")).split("train")


def test_torchvision_mnist_from_shared(shared_data):
    data = MNISTDataModule(root=str(shared_data), download=False)
    x, y = data.split("test")
    assert x.shape == (10000, 1, 28, 28) and torch.equal(torch.bincount(y)[:2], torch.tensor([980, 1135]))
    assert data.split("train")[0].shape[0] == 60000
    with pytest.raises(ValueError, match="download"):
        MNISTDataModule(root=str(shared_data / "nowhere"), download=False).split("test")


def test_cifar10_npz_subsets_from_shared(shared_data):
    if not (shared_data / "cifar10" / "train_10k.npz").is_file():
        pytest.skip("cifar10 npz subsets not in shared data")
    data = CIFAR10DataModule(root=str(shared_data), download=False, batch_size=8)
    assert data.hflip and data.shape == (3, 32, 32)
    x, y = data.split("train")
    assert x.shape == (10000, 3, 32, 32) and int(y.max()) == 9
    assert data.split("test")[0].shape == (1000, 3, 32, 32)
    ds = data.dataset("train")
    flips = sum(not torch.equal(ds[0][0], data.scale(x[0].float() / 255)) for _ in range(40))
    assert 5 < flips < 35  # random horizontal flips, p = 1/2
    batch = next(iter(data.val_dataloader()))[0]
    assert batch.min() >= -1 and batch.max() <= 1
