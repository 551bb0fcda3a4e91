"""Tests of darts_lightning.data: the digits splits, the search data module and the seeded augmentation."""

from __future__ import annotations

import inspect

import pytest
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Subset

from darts_lightning.data import (
    DATASETS,
    DIGITS_TEST_SIZE,
    Augmentation,
    AugmentedDataset,
    ClassificationDataModule,
    Cutout,
    EpochSampler,
    ImageDataModule,
    RandomCrop,
    RandomHorizontalFlip,
    SearchDataModule,
    digits_splits,
    sample_generator,
)


@pytest.fixture(scope="module")
def splits():
    return digits_splits()


# --------------------------------------------------------------------------- digits


def test_digits_split_sizes_and_shapes(splits):
    pool, test = splits
    assert len(pool) == 1500 and len(test) == 297 == DIGITS_TEST_SIZE
    assert len(pool) + len(test) == 1797  # the whole digits set, each image in exactly one split
    assert pool.tensors[0].shape == (1500, 1, 8, 8) and test.tensors[0].shape == (297, 1, 8, 8)
    assert pool.tensors[0].dtype == torch.float32 and pool.tensors[1].dtype == torch.long
    assert set(pool.tensors[1].tolist()) == set(range(10)) == set(test.tensors[1].tolist())


def test_digits_splits_are_disjoint_and_stratified(splits):
    from sklearn.datasets import load_digits

    pool, test = splits
    total = torch.bincount(torch.as_tensor(load_digits().target), minlength=10)
    test_counts = torch.bincount(test.tensors[1], minlength=10)
    pool_counts = torch.bincount(pool.tensors[1], minlength=10)
    # class counts add up: no sample in both splits, none missing
    assert torch.equal(pool_counts + test_counts, total)
    # stratified: 297/1797 of each class (~29.7) -> 29 or 30 test images per class
    assert set(test_counts.tolist()) <= {29, 30}


def test_digits_normalised_on_pool(splits):
    pool, _ = splits
    images = pool.tensors[0]
    assert abs(images.mean().item()) < 1e-4
    assert abs(images.std().item() - 1.0) < 1e-4


def test_digits_splits_deterministic(splits):
    pool2, test2 = digits_splits()
    pool, test = splits
    for a, b in zip(pool.tensors + test.tensors, pool2.tensors + test2.tensors):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- SearchDataModule on digits


def _first_batch(dm: SearchDataModule, epoch: int):
    loader = dm.train_dataloader()
    for dl in loader.flattened:
        dl.sampler.set_epoch(epoch)
    batch, _, _ = next(iter(loader))
    return batch


def test_digits_module_info():
    dm = SearchDataModule("digits")
    assert (dm.in_channels, dm.num_classes, dm.image_size) == (1, 10, 8)


def test_digits_module_split():
    dm = SearchDataModule("digits")
    dm.setup()
    assert isinstance(dm.search_train, Subset) and isinstance(dm.search_val, Subset)
    assert len(dm.search_train) == 750 and len(dm.search_val) == 750
    train_idx, val_idx = set(dm.search_train.indices), set(dm.search_val.indices)
    assert train_idx.isdisjoint(val_idx)
    assert train_idx | val_idx == set(range(1500))
    assert dm.search_train.dataset is dm.search_val.dataset
    assert len(dm.search_train.dataset) == 1500  # the pool, not the held-out test images


def test_digits_module_train_portion():
    dm = SearchDataModule("digits", train_portion=0.8)
    dm.setup()
    assert (len(dm.search_train), len(dm.search_val)) == (1200, 300)


def test_train_loader_yields_train_and_val_batches():
    dm = SearchDataModule("digits", batch_size=64)
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    assert len(loader.flattened) == 2 and all(isinstance(dl, DataLoader) for dl in loader.flattened)
    batch = _first_batch(dm, 0)
    assert isinstance(batch, dict) and set(batch) == {"train", "val"}
    for x, y in batch.values():
        assert x.shape == (64, 1, 8, 8)
        assert y.shape == (64,) and y.dtype == torch.long
    assert len(iter(loader)) == 12  # max_size_cycle: ceil(750 / 64) steps


def test_val_loader_is_search_val_in_order():
    dm = SearchDataModule("digits", batch_size=50)
    loader = dm.val_dataloader()
    ys = torch.cat([y for _, y in loader])
    pool = dm.search_val.dataset
    assert torch.equal(ys, pool.tensors[1][dm.search_val.indices])


def test_data_order_depends_only_on_seed_and_epoch():
    a = _first_batch(SearchDataModule("digits", seed=3), epoch=2)
    b = _first_batch(SearchDataModule("digits", seed=3), epoch=2)
    for key in ("train", "val"):
        assert torch.equal(a[key][0], b[key][0]) and torch.equal(a[key][1], b[key][1])
    c = _first_batch(SearchDataModule("digits", seed=3), epoch=3)
    for key in ("train", "val"):
        assert not torch.equal(a[key][0], c[key][0])
    # within one epoch the order is a permutation of the split: an epoch sees every sample once
    dm = SearchDataModule("digits", seed=3, batch_size=100)
    loader = dm.train_dataloader()
    for dl in loader.flattened:
        dl.sampler.set_epoch(5)
    xs = torch.cat([batch["train"][0] for batch, _, _ in loader])
    assert xs.shape[0] == 750
    expected = dm.search_train.dataset.tensors[0][dm.search_train.indices]
    assert torch.equal(xs.flatten(1).sum(1).sort().values, expected.flatten(1).sum(1).sort().values)


def test_different_seed_gives_different_split():
    a, b = SearchDataModule("digits", seed=0), SearchDataModule("digits", seed=1)
    a.setup(), b.setup()
    assert set(a.search_train.indices) != set(b.search_train.indices)
    c = SearchDataModule("digits", seed=0)
    c.setup()
    assert list(c.search_train.indices) == list(a.search_train.indices)


# --------------------------------------------------------------------------- errors


COMMON = {"dataset": "digits", "root": "data", "batch_size": 64, "num_workers": 0, "seed": 0, "download": False,
          "cutout_length": 0, "resize": None}


@pytest.mark.parametrize("cls, arguments", [
    (ImageDataModule, {**COMMON, "test_root": None}),
    (SearchDataModule, {**COMMON, "train_portion": 0.5}),
    (ClassificationDataModule,
     {**COMMON, "batch_size": 96, "cutout_length": 16, "test_root": None, "holdout": False, "train_portion": 0.5}),
])
def test_the_data_modules_take_their_arguments_by_name_with_their_defaults(cls, arguments):
    """The arguments configs name (``--data.init_args.<name>``), with their defaults: in the signature the
    command line reads, and recorded as hyperparameters (which a resume compares) in full."""
    parameters = dict(inspect.signature(cls).parameters)
    assert {name: p.default for name, p in parameters.items()} == arguments
    if cls is not ImageDataModule:
        assert dict(cls().hparams) == arguments
        assert dict(cls(seed=3).hparams) == {**arguments, "seed": 3}


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as info:
        SearchDataModule("imagenet")
    for name in DATASETS:
        assert name in str(info.value)


@pytest.mark.parametrize("portion", [0.0, 1.0, -0.5, 1.5])
def test_train_portion_must_be_inside_unit_interval(portion):
    with pytest.raises(ValueError, match="train_portion"):
        SearchDataModule("digits", train_portion=portion)


def test_train_portion_leaving_empty_split():
    dm = SearchDataModule("digits", train_portion=0.0001)
    with pytest.raises(ValueError, match="empty split"):
        dm.setup()


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        SearchDataModule("digits", batch_size=0)


def test_missing_cifar10_explains_where_and_how(tmp_path):
    dm = SearchDataModule("cifar10", root=str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        dm.setup()
    message = str(info.value)
    assert str(tmp_path.resolve()) in message
    assert "download" in message
    assert "cifar-10-batches-py" in message


# --------------------------------------------------------------------------- ImageFolder


@pytest.fixture
def image_tree(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    generator = torch.Generator().manual_seed(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = torch.randint(0, 256, (10, 10, 3), generator=generator, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def test_imagefolder(image_tree):
    dm = SearchDataModule("imagefolder", root=str(image_tree), resize=8, batch_size=4)
    assert dm.num_classes == 2
    assert dm.in_channels == 3 and dm.image_size == 8
    dm.setup()
    assert len(dm.search_train) + len(dm.search_val) == 6
    batch = _first_batch(dm, 0)
    for x, y in batch.values():
        assert x.ndim == 4 and x.shape[1:] == (3, 8, 8)
        assert set(y.tolist()) <= {0, 1}


def test_imagefolder_needs_resize(image_tree):
    dm = SearchDataModule("imagefolder", root=str(image_tree))
    assert dm.num_classes == 2
    with pytest.raises(ValueError, match="resize"):
        _ = dm.image_size


def test_imagefolder_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    dm = SearchDataModule("imagefolder", root=str(missing), resize=8)
    with pytest.raises(FileNotFoundError) as info:
        _ = dm.num_classes
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SearchDataModule("imagefolder", root=str(missing), resize=8).setup()


def test_imagefolder_without_class_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        _ = SearchDataModule("imagefolder", root=str(tmp_path), resize=8).num_classes


# --------------------------------------------------------------------------- Cutout


@pytest.mark.parametrize("seed", range(20))
def test_cutout_zeroes_a_square(seed):
    torch.manual_seed(seed)
    img = torch.ones(3, 32, 32)
    out = Cutout(16)(img)
    assert torch.equal(img, torch.ones(3, 32, 32))  # the input is not modified
    assert out.shape == img.shape
    zero = out == 0
    assert zero.any() and not zero.all()
    assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # same square in every channel
    rows = zero[0].any(dim=1).nonzero().flatten()
    cols = zero[0].any(dim=0).nonzero().flatten()
    y1, y2, x1, x2 = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
    # the zeros fill exactly their bounding box: an axis-aligned rectangle
    assert zero[0].sum().item() == (y2 - y1) * (x2 - x1)
    assert zero[0, y1:y2, x1:x2].all()
    assert 1 <= y2 - y1 <= 16 and 1 <= x2 - x1 <= 16
    # everything else is untouched
    assert (out[:, ~zero[0]] == 1).all()


def test_cutout_in_transform_pipeline():
    dm = SearchDataModule("cifar10", cutout_length=16)
    steps = dm._transform(train=True).transforms
    assert isinstance(steps[-1], Cutout) and steps[-1].length == 16
    assert not any(isinstance(s, Cutout) for s in SearchDataModule("cifar10")._transform(train=True).transforms)


# --------------------------------------------------------------------------- seeded augmentation


@pytest.mark.parametrize("seed", range(10))
def test_crop_and_flip_draw_as_torchvision(seed):
    """Same random stream, same image as DARTS's torchvision pipeline (RandomCrop(32, padding=4),
    RandomHorizontalFlip, ToTensor, Normalize): our crop and flip make torchvision's draws in its order."""
    import torchvision.transforms as T
    from PIL import Image

    pixels = torch.randint(0, 256, (32, 32, 3), generator=torch.Generator().manual_seed(100 + seed), dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy())
    info = DATASETS["cifar10"]
    torch.manual_seed(seed)
    reference = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(info.mean, info.std)])
    expected = reference(image)
    augmentation = SearchDataModule("cifar10")._transform(train=True)
    assert [type(t) for t in augmentation.transforms] == [RandomCrop, RandomHorizontalFlip, T.Normalize]
    got = augmentation(T.ToTensor()(image), torch.Generator().manual_seed(seed))
    assert torch.equal(got, expected)


def test_augmentation_steps_per_dataset():
    import torchvision.transforms as T

    def steps(name, **kwargs):
        return [type(t) for t in SearchDataModule(name, **kwargs)._transform(train=True).transforms]

    assert steps("cifar100", cutout_length=16) == [RandomCrop, RandomHorizontalFlip, T.Normalize, Cutout]
    assert steps("svhn") == [RandomCrop, T.Normalize]
    assert steps("imagefolder", resize=8) == [RandomHorizontalFlip, T.Normalize]
    assert steps("mnist") == [T.Normalize]
    assert steps("digits") == [] and steps("digits", cutout_length=4) == [Cutout]
    assert [type(t) for t in SearchDataModule("cifar10")._transform(train=False).transforms] == [T.Normalize]
    # the digits without cutout stay the plain normalised pool
    assert isinstance(SearchDataModule("digits").training_set(), torch.utils.data.TensorDataset)


def _constant_images(n: int = 16) -> AugmentedDataset:
    """Identical images: whatever differs between two samples is their augmentation."""
    base = torch.utils.data.TensorDataset(torch.ones(n, 1, 8, 8), torch.zeros(n, dtype=torch.long))
    return AugmentedDataset(base, Augmentation([RandomCrop(8, padding=2), RandomHorizontalFlip(), Cutout(4)]), seed=5)


def test_augmentation_is_a_function_of_seed_epoch_and_index_only():
    data = _constant_images()
    torch.manual_seed(0)
    first = [data[(3, i)][0] for i in range(16)]
    torch.manual_seed(12345)
    torch.rand(7)
    again = [data[(3, i)][0] for i in range(16)]
    assert all(torch.equal(a, b) for a, b in zip(first, again)), "global torch RNG state must not matter"
    assert all(torch.equal(data[i][0], data[(0, i)][0]) for i in range(4)), "a plain index means epoch 0"
    # distinct indexes of one epoch, and one index over distinct epochs, are augmented differently
    assert len({tuple(x.flatten().tolist()) for x in first}) >= 12
    assert len({tuple(data[(epoch, 3)][0].flatten().tolist()) for epoch in range(16)}) >= 12
    other_seed = AugmentedDataset(data.base, data.augmentation, seed=6)
    assert not all(torch.equal(data[(3, i)][0], other_seed[(3, i)][0]) for i in range(16))
    assert torch.equal(sample_generator(5, 3, 2).get_state(), sample_generator(5, 3, 2).get_state())
    with pytest.raises(ValueError, match="non-negative"):
        sample_generator(-1, 0, 0)


def _epoch_images(loader: DataLoader, epoch: int) -> torch.Tensor:
    loader.sampler.set_epoch(epoch)
    return torch.cat([x for x, _ in loader])


def test_augmentation_is_the_same_for_every_worker_layout():
    """num_workers 0, 2 with persistent workers (the module's loader) and 2 without give the same images
    in every epoch: the epoch reaches the workers with each index, not through their copy of the data set."""
    def module(workers):
        dm = SearchDataModule("digits", batch_size=32, cutout_length=4, num_workers=workers, seed=7)
        dm.setup()
        return dm

    dm = module(0)
    serial = dm._loader(dm.search_train, shuffle=True, seed=dm.seed)
    assert isinstance(serial.sampler, EpochSampler)
    expected = [_epoch_images(serial, epoch) for epoch in range(3)]
    assert not torch.equal(expected[0].sum(0), expected[1].sum(0))
    dm = module(2)
    persistent = dm._loader(dm.search_train, shuffle=True, seed=dm.seed)
    assert persistent.persistent_workers
    fresh = DataLoader(dm.search_train, batch_size=32, sampler=persistent.sampler, num_workers=2, persistent_workers=False)
    for epoch in range(3):
        torch.manual_seed(1000 + epoch)  # workers are seeded from the global generator: must not matter
        assert torch.equal(_epoch_images(persistent, epoch), expected[epoch]), epoch
        assert torch.equal(_epoch_images(fresh, epoch), expected[epoch]), epoch


def test_negative_seed_is_a_clear_error():
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        SearchDataModule("digits", seed=-1)


def _two_class_tree(root, broken: str | None = None):
    """A 2-class ImageFolder of 4x4 PNGs; ``broken``: a file name (inside class b) written as garbage bytes."""
    from PIL import Image

    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(torch.full((4, 4, 3), 60 * i, dtype=torch.uint8).numpy()).save(root / cls / f"{i}.png")
    if broken is not None:
        (root / "b" / broken).write_bytes(b"these bytes are not a PNG")
    return root


def test_imagefolder_with_one_class_is_refused_when_scanned(tmp_path):
    (tmp_path / "only" / "x").mkdir(parents=True)
    dm = SearchDataModule("imagefolder", root=str(tmp_path / "only"), resize=4)
    expected = "only: ImageFolder found 1 class ('x'); classification needs at least two classes (one sub-folder per class)"
    with pytest.raises(ValueError) as info:
        _ = dm.num_classes
    assert expected in str(info.value)
    with pytest.raises(ValueError) as info:
        dm.setup()
    assert expected in str(info.value)


def test_imagefolder_class_without_images_names_the_root_and_the_layout(tmp_path):
    root = _two_class_tree(tmp_path / "images")
    (root / "c").mkdir()
    with pytest.raises(FileNotFoundError, match=r"'.*images'.*classes c\b.*<root>/<class>/<image>"):
        SearchDataModule("imagefolder", root=str(root), resize=4).setup()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_undecodable_image_is_a_one_line_error_naming_the_file(tmp_path, num_workers):
    """A loader worker's exception reaches the main process wrapped in the worker's traceback: the first
    line of the message must still be the file and the fix."""
    from darts_lightning.data import ClassificationDataModule

    bad = _two_class_tree(tmp_path / "images", broken="bad.png") / "b" / "bad.png"
    dm = ClassificationDataModule("imagefolder", root=str(bad.parents[1]), test_root=str(bad.parents[1]), resize=4,
                                  batch_size=5, num_workers=num_workers, cutout_length=0)
    dm.setup()
    with pytest.raises(OSError) as info:
        next(iter(dm.val_dataloader()))
    first_line = str(info.value).splitlines()[0]
    assert first_line.startswith(f"cannot read image {bad} (not an image or truncated")
    assert first_line.endswith("remove or replace the file")
