"""``data=gmm``: samples of the exact Gaussian-mixture test bed as a LightningDataModule."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..errors import UserError
from ..models.gmm import GaussianMixture


def load_mixture(
    params_file=None,
    num_components=4,
    shape=(1, 4, 4),
    std_min=0.03,
    std_max=0.5,
    seed=0,
    means=None,
    stds=None,
    weights=None,
) -> GaussianMixture:
    """The mixture from an .npz, from explicit means/stds/weights, or from the multiscale preset."""
    if params_file:
        return GaussianMixture.from_npz(params_file)
    if means is not None:
        if stds is None or weights is None:
            raise UserError("data=gmm with explicit means also needs stds and weights")
        return GaussianMixture(means, stds, weights, shape)
    return GaussianMixture.multiscale(num_components, tuple(shape), std_min, std_max, seed)


class GMMDataModule(L.LightningDataModule):
    """Fixed train/val sets drawn from the mixture (labels = component index).

    Data are continuous and used as they are: ``scale``/``unscale`` are the identity and
    likelihoods need no dequantisation.
    """

    is_image = False

    def __init__(
        self,
        params_file=None,
        num_components=4,
        shape=(1, 4, 4),
        std_min=0.03,
        std_max=0.5,
        seed=0,
        means=None,
        stds=None,
        weights=None,
        train_size=20000,
        val_size=2000,
        batch_size=256,
        num_workers=0,
        limit=None,
        **_,
    ):
        super().__init__()
        self.mixture = load_mixture(params_file, num_components, shape, std_min, std_max, seed, means, stds, weights)
        self.shape = self.mixture.shape
        self.num_classes = self.mixture.num_components
        if limit is not None:  # debugging: at most `limit` samples per split
            train_size, val_size = min(train_size, int(limit)), min(val_size, int(limit))
        self.train_size, self.val_size, self.batch_size, self.seed = train_size, val_size, batch_size, seed
        self.num_workers = num_workers
        self._train = self._val = None

    def scale(self, x):
        return x

    def unscale(self, x):
        return x

    def data_std(self) -> float:
        """The mixture's root-mean-square per-dimension std (exact)."""
        return self.mixture.data_std

    def setup(self, stage=None):
        if self._train is None:
            g = torch.Generator().manual_seed(self.seed + 1)
            self._train = TensorDataset(*self.mixture.sample(self.train_size, generator=g))
            self._val = TensorDataset(*self.mixture.sample(self.val_size, generator=g))

    def train_dataloader(self):
        self.setup()
        return DataLoader(
            self._train, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=True
        )

    def val_dataloader(self):
        self.setup()
        return DataLoader(self._val, batch_size=self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self):
        return self.val_dataloader()

    def reference(self, n: int, *, split: str = "test", generator=None):
        """Fresh exact samples (x, y) for comparisons."""
        return self.mixture.sample(n, generator=generator)
