"""CIFAR-10 (``data=cifar10``): torchvision's data set under ``root`` (``download=true`` fetches it),
or lossless npz subsets (``images`` uint8 N×32×32×3, ``labels``) such as ``cifar10/train_10k.npz`` and
``cifar10/test_1k.npz``.  Random horizontal flips during training (``hflip``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import ImageDataModule, torchvision_split

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CIFAR10DataModule(ImageDataModule):
    """``source``: ``torchvision`` | ``npz`` | ``auto`` (torchvision's batches under ``root`` if
    present or downloadable, else ``root/cifar10/{train_file,test_file}``)."""

    shape = (3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        root="data",
        download=False,
        source="auto",
        train_file="cifar10/train_10k.npz",
        test_file="cifar10/test_1k.npz",
        **kw,
    ):
        kw.setdefault("hflip", True)
        super().__init__(**kw)
        self.root, self.download, self.source = str(root), bool(download), source
        self.train_file, self.test_file = train_file, test_file

    def _npz_path(self, name):
        path = Path(name).expanduser()
        return path if path.is_absolute() else Path(self.root).expanduser() / path

    def _use_npz(self):
        if self.source == "npz":
            return True
        if self.source == "torchvision":
            return False
        has_batches = (Path(self.root).expanduser() / "cifar-10-batches-py").is_dir()
        return not has_batches and not self.download and self._npz_path(self.train_file).is_file()

    def prepare_data(self):
        if self.download and not self._use_npz():
            from torchvision.datasets import CIFAR10

            for train in (True, False):
                torchvision_split(
                    "cifar10", self.root, True, lambda train=train: CIFAR10(self.root, train=train, download=True)
                )

    def load_split(self, split):
        if self._use_npz():
            path = self._npz_path(self.train_file if split == "train" else self.test_file)
            if not path.is_file():
                raise UserError(f"data=cifar10: {path} does not exist")
            with np.load(path) as f:
                return f["images"], f["labels"]
        from torchvision.datasets import CIFAR10

        ds = torchvision_split(
            "cifar10",
            self.root,
            self.download,
            lambda: CIFAR10(self.root, train=split == "train", download=self.download),
        )
        return ds.data, ds.targets
