"""Image data modules: a common base over uint8 image tensors, plus ``npz`` and ``imagefolder``.

Every image data module holds its images as uint8 tensors (N, C, H, W) and labels (N,), loaded
lazily in ``setup`` (constructing one touches no file, so ``shape``/``scale``/``unscale`` work on a
machine without the data).  Batches are ``(x, y)`` in *model space*:

    x = scale(pixels),  pixels = (uint8 + u) / 256, u ~ U[0, 1)   (uniform dequantisation, training)
                        pixels = uint8 / 255                          (otherwise)

``scaling: centered`` maps pixels in [0, 1] to [−1, 1] (what VP/sub-VP expect, score_sde's
``data.centered``); ``scaling: unit`` keeps [0, 1].  ``unscale`` is the inverse used wherever images
are written.  ``reference(n, split=...)`` returns real images in model space (like samples), so
``unscale`` maps both to [0, 1] for metrics.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError

SCALINGS = ("centered", "unit")


def torchvision_split(name: str, root: str, download: bool, make):
    """``make()`` (a torchvision data set under ``root``, downloading it when ``download``), with one-line
    errors: no network and no local copy say how to point at one (``data.root=PATH data.download=false``).
    torchvision's own download lines are shown only when the download works."""
    import contextlib
    import io
    import socket
    import sys
    import urllib.error

    hint = "point at a local copy with data.root=PATH data.download=false (e.g. data.root=../shared/data)"
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            dataset = make()
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(
            f"data={name}: no local copy under data.root={root} and the download failed "
            f"({' '.join(str(reason).split())}); {hint}"
        ) from None
    except RuntimeError as err:  # torchvision: "Dataset not found..." or "Error downloading ..." (all mirrors)
        text = " ".join(str(err).split())
        if download:  # torchvision lists every mirror it tried: the first clause says what failed
            raise UserError(
                f"data={name}: no local copy under data.root={root} and the download failed "
                f"({text.split(': Tried', 1)[0].split(':', 1)[0]}); {hint}"
            ) from None
        raise UserError(
            f"data={name}: no {name} files under data.root={root} ({text}); {hint}, or data.download=true with network"
        ) from None
    sys.stdout.write(printed.getvalue())
    return dataset


class Scaler:
    """pixels in [0, 1]  <->  model space ([−1, 1] when centered, else [0, 1])."""

    def __init__(self, scaling: str = "centered"):
        if scaling not in SCALINGS:
            raise UserError(f"data.scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
        self.centered = scaling == "centered"

    def scale(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * 2 - 1 if self.centered else pixels

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> pixels in [0, 1] (clamped)."""
        return ((x + 1) / 2 if self.centered else x).clamp(0, 1)


class ImageTensorDataset(Dataset):
    """uint8 images (N, C, H, W) -> (scaled float image, label), with optional dequantisation and flips."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, scaler: Scaler, *, dequantize=False, hflip=False):
        self.images, self.labels, self.scaler = images, labels, scaler
        self.dequantize, self.hflip = dequantize, hflip

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        img = self.images[i].float()
        if self.dequantize:
            img = (img + torch.rand_like(img)) / 256.0
        else:
            img = img / 255.0
        if self.hflip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        return self.scaler.scale(img), self.labels[i]


def to_nchw_uint8(images) -> torch.Tensor:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) uint8 arrays -> uint8 tensor (N, C, H, W)."""
    images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8:
        raise UserError(f"images must be uint8 (0-255), got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
        images = images.permute(0, 3, 1, 2)
    if images.ndim != 4:
        raise UserError(f"images must be N×H×W or N×H×W×C, got shape {tuple(images.shape)}")
    return images.contiguous()


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses implement ``load_split(split) -> (uint8 images NCHW, labels)``
    and set ``shape`` and ``num_classes``."""

    is_image = True
    shape: tuple = ()
    num_classes: int = 0

    def __init__(
        self,
        *,
        batch_size=128,
        num_workers=0,
        scaling="centered",
        dequantize=False,
        hflip=False,
        limit=None,
        seed=0,
        **_,
    ):
        super().__init__()
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.scaler = Scaler(scaling)
        self.scaling, self.dequantize, self.hflip = scaling, bool(dequantize), bool(hflip)
        self.limit, self.seed = limit, seed
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # --- scaling ------------------------------------------------------------------------------
    def scale(self, pixels):
        return self.scaler.scale(pixels)

    def unscale(self, x):
        return self.scaler.unscale(x)

    # --- data ---------------------------------------------------------------------------------
    def load_split(self, split: str):
        raise NotImplementedError

    def split(self, split: str):
        """(uint8 images, labels) of ``train`` or ``test`` (= validation), cached."""
        if split not in ("train", "test", "val"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        split = "test" if split == "val" else split
        if split not in self._splits:
            images, labels = self.load_split(split)
            images = to_nchw_uint8(images)
            labels = (
                torch.as_tensor(np.asarray(labels), dtype=torch.long)
                if labels is not None
                else torch.zeros(images.shape[0], dtype=torch.long)
            )
            if self.limit:
                images, labels = images[: int(self.limit)], labels[: int(self.limit)]
            if tuple(images.shape[1:]) != tuple(self.shape):
                raise UserError(
                    f"{type(self).__name__}: images have shape {tuple(images.shape[1:])}, expected {tuple(self.shape)}"
                )
            self._splits[split] = (images, labels)
        return self._splits[split]

    def setup(self, stage=None):
        self.split("train")
        self.split("test")

    def data_std(self, max_images: int = 10_000) -> float:
        """The training images' root-mean-square per-pixel std in model space, √(mean over pixels of the
        variance across images), from the first ``max_images`` (≈ 0.52 for MNIST in [−1, 1]): the data's
        scale the samplers' focus grid follows (``samplers.grids.focus_grid``)."""
        images, _ = self.split("train")
        x = self.scaler.scale(images[: int(max_images)].float() / 255.0).flatten(1)
        return float(x.var(0, unbiased=False).mean().sqrt())

    def dataset(self, split: str, train: bool | None = None) -> ImageTensorDataset:
        train = split == "train" if train is None else train
        images, labels = self.split(split)
        return ImageTensorDataset(
            images, labels, self.scaler, dequantize=self.dequantize and train, hflip=self.hflip and train
        )

    def train_dataloader(self):
        return DataLoader(
            self.dataset("train"),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self):
        return DataLoader(self.dataset("test"), batch_size=self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self):
        return self.val_dataloader()

    def reference(self, n: int, *, split: str = "test", generator=None):
        """n real images (x in model space, labels), a random subset drawn with ``generator``;
        the whole split (in random order) when it has fewer than n."""
        images, labels = self.split(split)
        n = min(int(n), images.shape[0])
        idx = torch.randperm(images.shape[0], generator=generator)[:n]
        return self.scaler.scale(images[idx].float() / 255.0), labels[idx]


class NpzDataModule(ImageDataModule):
    """``data=npz``: ``images`` uint8 N×H×W×C (or N×H×W) and optional ``labels`` in .npz files.

    ``train_file`` is required; ``test_file`` defaults to the last ``val_fraction`` of it.
    """

    def __init__(self, train_file, test_file=None, val_fraction=0.1, num_classes=None, **kw):
        super().__init__(**kw)
        self.train_file, self.test_file, self.val_fraction = train_file, test_file, float(val_fraction)
        self._num_classes = num_classes
        self._shape = None

    def _read(self, path):
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"data=npz: {path} does not exist (set data.train_file= / data.test_file=)")
        try:
            with np.load(path) as f:
                if "images" not in f:
                    raise UserError(f"data=npz: {path} has no 'images' array (arrays: {list(f.keys())})")
                images, labels = f["images"], (f["labels"] if "labels" in f else None)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            if isinstance(err, UserError):
                raise
            raise UserError(
                f"data=npz: {path} is not a readable .npz file ({type(err).__name__}; corrupt or not "
                f"saved by numpy.savez)"
            ) from None
        if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
            raise UserError(
                f"data=npz: {path} has {len(images)} images but labels of shape {tuple(labels.shape)}; "
                f"labels must be one integer per image"
            )
        if labels is not None and len(labels):
            if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
                raise UserError(f"data=npz: {path} has labels of dtype {labels.dtype}; labels must be integers >= 0")
            low, high = int(labels.min()), int(labels.max())
            classes = self._num_classes
            if low < 0 or (classes and high >= int(classes)):
                allowed = f"0..{int(classes) - 1} (data.num_classes={classes})" if classes else ">= 0"
                raise UserError(
                    f"data=npz: {path} has labels from {low} to {high}; labels must be class indices {allowed}"
                )
        return images, labels

    @property
    def shape(self):
        if self._shape is None:
            self._shape = tuple(to_nchw_uint8(self._read(self.train_file)[0][:1]).shape[1:])
        return self._shape

    @property
    def num_classes(self):
        if self._num_classes is None:
            labels = self._read(self.train_file)[1]
            self._num_classes = int(labels.max()) + 1 if labels is not None else 0
        return self._num_classes

    def load_split(self, split):
        if self.test_file:
            return self._read(self.train_file if split == "train" else self.test_file)
        images, labels = self._read(self.train_file)
        n_val = max(1, int(round(len(images) * self.val_fraction)))
        sel = slice(None, -n_val) if split == "train" else slice(-n_val, None)
        return images[sel], (labels[sel] if labels is not None else None)


class ImageFolderDataModule(ImageDataModule):
    """``data=imagefolder``: torchvision ImageFolder layout (root/class_x/xxx.png), resized to
    ``image_size`` (center crop) and loaded into memory once; the last ``val_fraction`` is held out."""

    def __init__(self, root, image_size=32, channels=3, val_fraction=0.1, **kw):
        super().__init__(**kw)
        self.root, self.image_size, self.channels = root, int(image_size), int(channels)
        self.val_fraction = float(val_fraction)
        self.shape = (self.channels, self.image_size, self.image_size)
        self._classes = None

    def _root(self) -> Path:
        root = Path(str(self.root)).expanduser()
        if not root.is_dir():
            raise UserError(f"data=imagefolder: data.root={root} is not a folder (layout: root/<class>/<image>)")
        return root

    @property
    def num_classes(self):
        if self._classes is None:
            self._classes = sorted(p.name for p in self._root().iterdir() if p.is_dir())
        return len(self._classes)

    def _load_all(self):
        from torchvision import datasets, transforms

        root = self._root()
        if self.num_classes == 0:
            raise UserError(f"data=imagefolder: {root} has no class folders with images (layout: root/<class>/<image>)")
        tf = transforms.Compose(
            [transforms.Resize(self.image_size), transforms.CenterCrop(self.image_size), transforms.PILToTensor()]
        )
        mode = "L" if self.channels == 1 else "RGB"
        try:
            ds = datasets.ImageFolder(
                str(root), transform=tf, loader=lambda p: datasets.folder.default_loader(p).convert(mode)
            )
        except FileNotFoundError as err:  # no image files in the class folders
            raise UserError(f"data=imagefolder: {root}: {str(err).splitlines()[0]}") from None
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        labels = torch.tensor(ds.targets)
        perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(self.seed))
        return images[perm], labels[perm]

    def load_split(self, split):
        if "all" not in self.__dict__:
            self.all = self._load_all()
        images, labels = self.all
        n_val = max(1, int(round(len(images) * self.val_fraction)))
        return (images[:-n_val], labels[:-n_val]) if split == "train" else (images[-n_val:], labels[-n_val:])
