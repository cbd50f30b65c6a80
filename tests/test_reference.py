"""Reference data for the sample metrics: the full MNIST test split when a root is given."""

import pytest
import torch

from sdegen.data.gmm import GMMDataModule
from sdegen.data.mnist import EmbeddedMNISTDataModule
from sdegen.errors import UserError
from sdegen.metrics.reference import reference_images


def test_embedded_split_without_a_root_says_it_is_not_comparable():
    data = EmbeddedMNISTDataModule()
    images, text = reference_images(data, 10000)
    assert images.dtype == torch.uint8 and images.shape == (500, 1, 28, 28)
    test_images, _ = data.split("test")
    # the same 500 digits, as uint8 (the round trip through model space is exact)
    assert torch.equal(images.sort(0).values, test_images.sort(0).values)
    assert "500 images" in text and "not comparable" in text


def test_full_mnist_test_split_from_a_torchvision_root(shared_data):
    if not (shared_data / "MNIST" / "raw").is_dir():
        pytest.skip(f"{shared_data}/MNIST/raw absent")
    data = EmbeddedMNISTDataModule()
    images, text = reference_images(data, 10000, mnist_root=shared_data)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert "all 10,000" in text and "published" in text
    sub, text = reference_images(data, 1000, mnist_root=shared_data, seed=3)
    assert sub.shape[0] == 1000 and "subset of 1,000" in text and "use all 10,000" in text
    # a seeded subset of the same split: every image is one of the 10,000
    assert (sub[:5, None].float() - images[None].float()).abs().sum((2, 3, 4)).min(1).values.max() == 0


def test_missing_root_fails_fast(tmp_path):
    with pytest.raises(UserError, match="eval.mnist_root=.*MNIST/raw"):
        reference_images(EmbeddedMNISTDataModule(), 100, mnist_root=tmp_path)


def test_non_image_data_and_non_mnist_ignore_the_root(tmp_path):
    data = GMMDataModule()
    x, text = reference_images(data, 300, mnist_root=tmp_path)  # the root is for MNIST only
    assert x.shape[0] == 300 and x.is_floating_point() and "model space" in text


def test_a_runs_data_limit_does_not_shrink_the_reference():
    """debug=fast trains on data.limit=64 images; its eval reference is still the whole split (500 digits)."""
    limited = EmbeddedMNISTDataModule(limit=64)
    images, text = reference_images(limited, 256, seed=1)
    assert images.shape == (256, 1, 28, 28) and "256 images" in text
    assert limited.split("test")[0].shape[0] == 64  # the data module itself is untouched
    full, _ = reference_images(EmbeddedMNISTDataModule(), 256, seed=1)
    assert torch.equal(images, full)  # the same seeded subset as without the limit
