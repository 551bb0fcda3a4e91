"""Data for the search: a labelled training set split into search-train and search-val.

DARTS (Liu et al., sec. 3.1.1) searches on half of the CIFAR-10 training set and uses the other half as
the validation set of the architecture step. :class:`SearchDataModule` does the same for any data set:
it splits the training set by ``train_portion`` with a fixed seed and serves both halves together, one
batch of each per step (``{"train": (x, y), "val": (x, y)}``).

The embedded default is scikit-learn's handwritten digits (1,797 real 8×8 grey images, shipped with
scikit-learn, no download). 297 of them, stratified by class with ``random_state=0``, form a fixed
test split that no search ever sees (:func:`digits_splits`); the search uses the other 1,500.

Data order is a function of ``(seed, epoch)`` only: every loader uses a seeded
:class:`~torch.utils.data.DistributedSampler` whose epoch the trainer sets, so a resumed run sees the
same batches as an uninterrupted one and every rank of a multi-process run draws its own shard.

Augmentation is a function of ``(seed, epoch, sample index)`` only: the sampler hands each index to the
data set together with its epoch, and the data set draws the random crop, flip and cutout of that sample
from a :class:`torch.Generator` seeded from the three (:func:`sample_generator`). Torch's global random
state, the rank and the worker layout (``num_workers``, persistent workers or not) play no part, so a
resumed run also sees the same augmented images as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from darts_lightning.utils.validation import check_choice, check_range

__all__ = [
    "ImageDataModule", "SearchDataModule", "ClassificationDataModule", "DatasetInfo", "DATASETS", "digits_splits",
    "RandomTransform", "RandomCrop", "RandomHorizontalFlip", "Cutout", "Augmentation", "AugmentedDataset",
    "EpochSampler", "sample_generator", "search_split", "DIGITS_TEST_SIZE", "UnreadableImageError", "load_image",
]

DIGITS_TEST_SIZE = 297
"""Images of the digits held out as the fixed test split (stratified, ``random_state=0``)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Shape facts the network needs before any data is loaded."""

    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    hint: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(1, 8, 10, hint="bundled with scikit-learn"),
    "cifar10": DatasetInfo(3, 32, 10, (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768),
                           hint="expects <root>/cifar-10-batches-py"),
    "cifar100": DatasetInfo(3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            hint="expects <root>/cifar-100-python"),
    "mnist": DatasetInfo(1, 28, 10, (0.1307,), (0.3081,), hint="expects <root>/MNIST/raw"),
    "fashion_mnist": DatasetInfo(1, 28, 10, (0.2860,), (0.3530,), hint="expects <root>/FashionMNIST/raw"),
    "svhn": DatasetInfo(3, 32, 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), hint="expects <root>/train_32x32.mat"),
    "imagefolder": DatasetInfo(3, 0, 0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), hint="one sub-folder per class"),
}


def digits_splits() -> tuple[TensorDataset, TensorDataset]:
    """The digits as ``(search_pool, test)`` tensor data sets of normalised ``[N, 1, 8, 8]`` images.

    The test split (297 images, stratified by class, ``random_state=0``) is fixed for good: searches use
    only the pool (1,500 images); retraining evaluates on the test split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    pool_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=DIGITS_TEST_SIZE, stratify=digits.target, random_state=0
    )
    pool_idx, test_idx = torch.tensor(sorted(pool_idx)), torch.tensor(sorted(test_idx))
    mean, std = images[pool_idx].mean(), images[pool_idx].std()
    images = (images - mean) / std
    return TensorDataset(images[pool_idx], labels[pool_idx]), TensorDataset(images[test_idx], labels[test_idx])


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random generator of one sample's augmentation: a function of ``(seed, epoch, index)`` only.

    The three numbers are mixed by NumPy's :class:`~numpy.random.SeedSequence` (its documented way of
    deriving independent streams from several integers), so neighbouring seeds, epochs and indexes give
    unrelated draws.
    """
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed, epoch and index must be non-negative, got {(seed, epoch, index)}")
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class RandomTransform:
    """An augmentation step that draws its randomness from a given generator.

    ``generator=None`` falls back to torch's global generator (for use outside a data set); the data
    sets of this module always pass the generator of the sample (:func:`sample_generator`).
    """

    def __call__(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


class RandomCrop(RandomTransform):
    """Zero-pad a ``[C, H, W]`` tensor by ``padding`` on every side, then crop a random ``size × size`` window.

    torchvision's ``RandomCrop(size, padding)`` (constant fill 0) on a tensor from ``ToTensor``: the same
    two draws (top row, then left column, each uniform over the valid offsets) from the given generator.
    """

    def __init__(self, size: int, padding: int = 0) -> None:
        self.size, self.padding = size, padding

    def __call__(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        p = self.padding
        img = F.pad(img, (p, p, p, p)) if p else img
        h, w = img.shape[-2:]
        if h < self.size or w < self.size:
            raise ValueError(f"crop size {self.size} is larger than the padded image ({h}×{w})")
        top = int(torch.randint(0, h - self.size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - self.size + 1, (1,), generator=generator))
        return img[..., top : top + self.size, left : left + self.size]


class RandomHorizontalFlip(RandomTransform):
    """Mirror a ``[C, H, W]`` tensor left-right with probability ``p`` (torchvision's draw: ``rand(1) < p``)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if float(torch.rand(1, generator=generator)) < self.p:
            return img.flip(-1)
        return img


class Cutout(RandomTransform):
    """Zero a random ``length × length`` square of a ``[C, H, W]`` tensor (DeVries & Taylor, 2017).

    As the DARTS code's ``Cutout``: the centre is uniform over the pixels, the square is clipped at the
    border, and every channel is zeroed there.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        h, w = img.shape[-2:]
        y = int(torch.randint(h, (1,), generator=generator))
        x = int(torch.randint(w, (1,), generator=generator))
        y1, y2 = max(0, y - self.length // 2), min(h, y + self.length // 2)
        x1, x2 = max(0, x - self.length // 2), min(w, x + self.length // 2)
        img = img.clone()
        img[..., y1:y2, x1:x2] = 0.0
        return img


class Augmentation:
    """Tensor transforms applied in order; the random ones all draw from the one generator passed in.

    Deterministic steps (e.g. torchvision's ``Normalize``) are called with the image only.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    @property
    def is_random(self) -> bool:
        return any(isinstance(t, RandomTransform) for t in self.transforms)

    def __call__(self, img: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            img = t(img, generator) if isinstance(t, RandomTransform) else t(img)
        return img

    def __repr__(self) -> str:
        return f"Augmentation({self.transforms})"


@dataclass(eq=False)
class ImageDataModule(pl.LightningDataModule):
    """What the search and the retraining data modules share: the data sets, their shapes and transforms.

    The arguments are declared once, as the fields of this data class; :class:`SearchDataModule` and
    :class:`ClassificationDataModule` add theirs and change defaults. The generated ``__init__`` has an
    ordinary signature, which the command line, ``save_hyperparameters`` and the keyword checks read.

    Args:
        dataset: ``digits`` (embedded default), ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``,
            ``svhn`` or ``imagefolder`` (``root`` then is a folder with one sub-folder per class).
        root: where torchvision data sets live (or the ImageFolder tree).
        batch_size: per process: under DDP each of N ranks loads ``batch_size`` samples, so the effective
            batch is ``N · batch_size`` (scale the learning rates accordingly, e.g. linearly).
        num_workers: data-loading worker processes.
        seed: fixes any split and, with the epoch, the order of the batches and (with the epoch and the
            sample's index) each training image's augmentation.
        download: let torchvision download a missing data set.
        cutout_length: cutout augmentation size for training images (0: off).
        resize: for ``imagefolder``: the size images are resized and centre-cropped to.
        test_root: for ``imagefolder``: the class tree of the test split.
    """

    dataset: str = "digits"
    root: str = "data"
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 0
    download: bool = False
    cutout_length: int = 0
    resize: int | None = None
    test_root: str | None = None

    def __post_init__(self) -> None:
        super().__init__()
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; valid datasets are: {', '.join(DATASETS)}")
        check_range("batch_size", self.batch_size, 1, integer=True)
        check_range("num_workers", self.num_workers, 0, integer=True)
        check_range("seed", self.seed, 0, integer=True)
        check_range("cutout_length", self.cutout_length, 0, integer=True, hint="0 turns cutout off")
        check_range("resize", self.resize, 1, integer=True, optional=True)
        check_choice("download", self.download, (True, False))
        self._classes: list[str] | None = None

    # ------------------------------------------------------------------ shape facts

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def in_channels(self) -> int:
        return self.info.in_channels

    @property
    def num_classes(self) -> int:
        if self.dataset == "imagefolder":
            return len(self._folder_classes())
        return self.info.num_classes

    @property
    def image_size(self) -> int:
        if self.dataset == "imagefolder":
            if not self.resize:
                raise ValueError("dataset 'imagefolder' needs a size to resize images to (e.g. --data.init_args.resize 32)")
            return self.resize
        return self.info.image_size

    def _folder_classes(self) -> list[str]:
        if self._classes is None:
            root = Path(self.root)
            if not root.is_dir():
                raise FileNotFoundError(
                    f"ImageFolder root {str(root)!r} does not exist; point --data.root at a folder with one "
                    "sub-folder of images per class"
                )
            classes = sorted(p.name for p in root.iterdir() if p.is_dir())
            if not classes:
                raise FileNotFoundError(
                    f"ImageFolder root {str(root)!r} has no class sub-folders; expected <root>/<class>/<image>, "
                    "one sub-folder of images per class"
                )
            if len(classes) == 1:
                # A one-class problem would only fail later, inside the accuracy metric.
                raise ValueError(
                    f"{root}: ImageFolder found 1 class ({classes[0]!r}); classification needs at least two "
                    "classes (one sub-folder per class)"
                )
            self._classes = classes
        return self._classes

    # ------------------------------------------------------------------ data sets

    def _preprocess(self) -> list[Callable]:
        """The deterministic steps that turn a stored image into a ``[C, H, W]`` tensor in ``[0, 1]``."""
        import torchvision.transforms as T

        steps: list[Callable] = []
        if self.dataset == "imagefolder":
            steps += [T.Resize(self.image_size), T.CenterCrop(self.image_size)]
        return steps + [T.ToTensor()]

    def _transform(self, train: bool) -> Augmentation:
        """What follows :meth:`_preprocess`: DARTS's CIFAR augmentation for training images, normalisation
        only for test images.

        The DARTS code (``cnn/utils.py``, ``_data_transforms_cifar10``) trains on ``RandomCrop(32,
        padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, then ``Cutout``; crop and flip
        act on pixels, so doing them on the ``ToTensor`` output (zero padding = black) is the same. SVHN
        takes the crop without the flip (mirrored digits are other digits); ImageFolder takes the flip
        (its images are resized and centre-cropped); MNIST, Fashion-MNIST and the 8×8 digits take no crop
        or flip, only cutout when ``cutout_length`` > 0. The digits come normalised (:func:`digits_splits`).
        """
        import torchvision.transforms as T

        info = self.info
        steps: list[Callable] = []
        if train and self.dataset in ("cifar10", "cifar100", "svhn"):
            steps.append(RandomCrop(info.image_size, padding=4))
        if train and self.dataset in ("cifar10", "cifar100", "imagefolder"):
            steps.append(RandomHorizontalFlip())
        if self.dataset != "digits":
            steps.append(T.Normalize(info.mean, info.std))
        if train and self.cutout_length > 0:
            steps.append(Cutout(self.cutout_length))
        return Augmentation(steps)

    def labelled(self, split: str = "train") -> Dataset:
        """The labelled ``train`` or ``test`` split (for the digits: the 1,500-image pool or the fixed 297).

        The training split carries its augmentation as an :class:`AugmentedDataset` seeded with ``seed``.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        train = split == "train"
        if self.dataset == "digits":
            pool, test = digits_splits()
            augmentation = self._transform(train=True)
            if train and augmentation.is_random:
                return AugmentedDataset(pool, augmentation, self.seed)
            return pool if train else test
        import torchvision.datasets as D
        import torchvision.transforms as T

        # Training images: deterministic preprocessing in the torchvision data set, the seeded augmentation
        # around it. Test images: preprocessing and normalisation only.
        transform = T.Compose(self._preprocess() + ([] if train else [self._transform(train=False)]))
        if self.dataset == "imagefolder":
            self._folder_classes()
            folder = self.root if train else self.test_root or None
            if folder is None:
                raise ValueError("dataset 'imagefolder' needs --data.init_args.test_root for its test split")
            root = Path(folder)
            if not root.is_dir():
                raise FileNotFoundError(
                    f"ImageFolder {split} root {str(root)!r} does not exist; expected <root>/<class>/<image>, "
                    "one sub-folder of images per class"
                )
            try:
                base: Dataset = D.ImageFolder(str(root), transform=transform, loader=load_image)
            except FileNotFoundError as error:  # torchvision: a class folder without any image file
                raise FileNotFoundError(
                    f"ImageFolder {split} root {str(root)!r}: {error}; expected <root>/<class>/<image>, "
                    "one sub-folder of images per class"
                ) from error
        else:
            constructors = {
                "cifar10": lambda: D.CIFAR10(str(self.root), train=train, transform=transform, download=self.download),
                "cifar100": lambda: D.CIFAR100(str(self.root), train=train, transform=transform, download=self.download),
                "mnist": lambda: D.MNIST(str(self.root), train=train, transform=transform, download=self.download),
                "fashion_mnist": lambda: D.FashionMNIST(str(self.root), train=train, transform=transform, download=self.download),
                "svhn": lambda: D.SVHN(str(self.root), split=split, transform=transform, download=self.download),
            }
            try:
                base = constructors[self.dataset]()
            except RuntimeError as error:
                if self.download:
                    raise
                raise FileNotFoundError(
                    f"{self.dataset} not found under {str(Path(self.root).resolve())!r} ({self.info.hint}). "
                    f"Pass --data.download true to let torchvision download it, or put the data there "
                    f"and point --data.root at it. ({error})"
                ) from error
        return AugmentedDataset(base, self._transform(train=True), self.seed) if train else base

    def training_set(self) -> Dataset:
        """The full labelled training set (for the digits: the 1,500-image search pool)."""
        return self.labelled("train")

    # ------------------------------------------------------------------ loaders

    def _replicas(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _epoch(self) -> int:
        """The epoch the trainer is about to run: the count of processed epochs of its fit loop, the number
        Lightning passes to the samplers' ``set_epoch`` (after a resume, restored from the checkpoint)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return trainer.fit_loop.epoch_progress.current.processed

    def _loader(self, dataset: Dataset, shuffle: bool, seed: int) -> DataLoader:
        """A loader over this rank's shard; an augmented data set receives each index with its epoch.

        The sampler starts at the trainer's current epoch: Lightning creates the first iterator of a run
        before it calls ``set_epoch``, and with ``num_workers`` > 0 that iterator draws its first indices at
        once, so a run resumed at epoch e would otherwise start with the order and augmentation of epoch 0.
        """
        replicas, rank = self._replicas()
        sampler_class = EpochSampler if _takes_epoch(dataset) else DistributedSampler
        sampler: DistributedSampler = sampler_class(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed)
        sampler.set_epoch(self._epoch())
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )


_UNREADABLE = "cannot read image "


class UnreadableImageError(OSError):
    """An ImageFolder file that cannot be decoded as an image.

    A DataLoader worker hands an exception to the main process as ``type(error)(text)``, where the text
    opens with "Caught ... in DataLoader worker process N" and the worker's traceback; the message is put
    back in front of it, so that the first line still names the file and the fix with ``num_workers`` > 0.
    """

    def __init__(self, message: str) -> None:
        if not message.startswith(_UNREADABLE):
            own = [line for line in message.splitlines() if _UNREADABLE in line]
            if own:
                message = f"{own[-1][own[-1].index(_UNREADABLE):]}\n{message}"
        super().__init__(message)


def load_image(path: str) -> Any:
    """torchvision's ImageFolder loader (an RGB PIL image), with a one-line error naming an unreadable file
    instead of PIL's ``UnidentifiedImageError`` deep in a loader's traceback. Checked when the sample is
    read, not by decoding every file up front."""
    from PIL import UnidentifiedImageError
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except (OSError, SyntaxError) as error:  # PIL: unidentified or truncated files; SyntaxError: a broken PNG
        reason = "PIL does not recognise its format" if isinstance(error, UnidentifiedImageError) else str(error)
        raise UnreadableImageError(
            f"{_UNREADABLE}{path} (not an image or truncated: {reason}); remove or replace the file"
        ) from error


class AugmentedDataset(Dataset):
    """A data set of ``(image, label)`` pairs whose images pass through a seeded :class:`Augmentation`.

    Indexed by ``(epoch, index)`` (as :class:`EpochSampler` does), the augmentation of sample ``index``
    draws from ``sample_generator(seed, epoch, index)``: the same image on every rank, in every worker
    and after a resume. The epoch travels with the index because a loader's worker processes hold copies
    of the data set (made once when persistent); an attribute set on the data set would not reach them.
    A plain integer index means epoch 0.
    """

    def __init__(self, base: Dataset, augmentation: Augmentation, seed: int) -> None:
        self.base, self.augmentation, self.seed = base, augmentation, seed
        self._length = _length(base)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        x, y = self.base[index]
        return self.augmentation(x, sample_generator(self.seed, epoch, index)), y


def _length(dataset: Dataset) -> int:
    """The number of samples of ``dataset`` (torch's ``Dataset`` does not promise a ``__len__``)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no length: the data modules need a map-style data set with __len__")
    return len(dataset)


class _Split(Subset):
    """A :class:`~torch.utils.data.Subset` that passes ``(epoch, index)`` keys on to its data set."""

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, index = key
            return self.dataset[(epoch, self.indices[index])]
        return super().__getitem__(key)

    def __getitems__(self, keys: list) -> list:
        return [self[key] for key in keys]


def _takes_epoch(dataset: Dataset) -> bool:
    """Whether ``dataset`` is indexed by ``(epoch, index)`` (its augmentation depends on the epoch)."""
    if isinstance(dataset, _Split):
        return _takes_epoch(dataset.dataset)
    return isinstance(dataset, AugmentedDataset)


class EpochSampler(DistributedSampler):
    """A :class:`~torch.utils.data.DistributedSampler` that yields ``(epoch, index)`` instead of ``index``.

    Its epoch is the one ``set_epoch`` received (Lightning calls it at the start of every training and
    validation epoch, from the fit loop's epoch counter, which a checkpoint restores).
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


def search_split(full: Dataset, train_portion: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split ``full`` into (search-train, search-val): a permutation seeded with ``seed``, the first
    ``floor(train_portion · n)`` samples for search-train. Refuses a portion that leaves a split empty."""
    n = _length(full)
    split = int(math.floor(train_portion * n))
    if split == 0 or split == n:
        raise ValueError(f"train_portion {train_portion} leaves an empty split of {n} samples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return _Split(full, order[:split]), _Split(full, order[split:])


@dataclass(eq=False)
class SearchDataModule(ImageDataModule):
    """Search-train / search-val split of a labelled training set, served as one combined loader.

    Args:
        train_portion: fraction of the training set used for the weight step (DARTS: 0.5); the rest is
            search-val, used by the architecture step and for validation.
        Every other argument: see :class:`ImageDataModule` (``test_root`` excepted: a search never sees the
        test split). Both splits take the training augmentation, as in the DARTS search.
    """

    test_root: str | None = field(default=None, init=False, repr=False)
    train_portion: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("train_portion", self.train_portion, 0, 1, low_open=True, high_open=True)
        self.save_hyperparameters()  # the data class's fields, as given
        self.search_train: Dataset | None = None
        self.search_val: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.search_train is None:
            self.search_train, self.search_val = search_split(self.training_set(), self.train_portion, self.seed)

    def splits(self) -> tuple[Dataset, Dataset]:
        """(search-train, search-val), split on first use."""
        self.setup()
        assert self.search_train is not None and self.search_val is not None  # set by setup
        return self.search_train, self.search_val

    def train_dataloader(self) -> CombinedLoader:
        """One search-train and one search-val batch per step, both reshuffled each epoch."""
        search_train, search_val = self.splits()
        return CombinedLoader(
            {
                "train": self._loader(search_train, shuffle=True, seed=self.seed),
                "val": self._loader(search_val, shuffle=True, seed=self.seed + 1),
            },
            mode="max_size_cycle",
        )

    def val_dataloader(self) -> DataLoader:
        """The search-val split: the supernet's validation accuracy is measured on it."""
        return self._loader(self.splits()[1], shuffle=False, seed=self.seed)


@dataclass(eq=False)
class ClassificationDataModule(ImageDataModule):
    """Train on the whole training set, validate and test on the test split (retraining a genotype).

    For the digits: the 1,500-image search pool (search-train ∪ search-val) for training and the fixed
    297-image test split that no search sees for validation and testing. For CIFAR and the other
    torchvision sets: the training set and the test set, as the DARTS evaluation reports test error.
    Defaults are the data settings of the DARTS CIFAR-10 retraining recipe (batch 96, cutout 16).

    Args:
        holdout: instead train on search-train and validate and test on search-val (the split of
            :class:`SearchDataModule` with the same ``train_portion`` and ``seed``): for choosing among
            genotypes without looking at the test split.
        train_portion: the search-train fraction of the ``holdout`` split.
        Every other argument: see :class:`ImageDataModule`.
    """

    batch_size: int = 96
    cutout_length: int = 16
    holdout: bool = False
    train_portion: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        # Checked whatever holdout is: a wrong value must not wait for the day holdout is switched on.
        check_range("train_portion", self.train_portion, 0, 1, low_open=True, high_open=True)
        check_choice("holdout", self.holdout, (True, False))
        self.save_hyperparameters()  # the data class's fields, as given
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.holdout:
            self.train_set, self.test_set = search_split(self.training_set(), self.train_portion, self.seed)
        else:
            self.train_set, self.test_set = self.labelled("train"), self.labelled("test")

    def splits(self) -> tuple[Dataset, Dataset]:
        """(training, test) sets, loaded on first use (search-train and search-val with ``holdout``)."""
        self.setup()
        assert self.train_set is not None and self.test_set is not None  # set by setup
        return self.train_set, self.test_set

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits()[0], shuffle=True, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits()[1], shuffle=False, seed=self.seed)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits()[1], shuffle=False, seed=self.seed)
