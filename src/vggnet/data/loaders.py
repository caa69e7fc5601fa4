"""Multi-process loading with a reproducible, resumable, rank-sharded order.

The order of an epoch is a permutation drawn from (seed, epoch) alone. Step k of the epoch is the
global batch at positions [k*B, (k+1)*B) of that permutation; rank r of W takes the contiguous
B/W slice r of it. So every step's global batch is the same whatever the number of processes
(synchronous data parallelism equals single-process training, §3.3), ranks see disjoint images,
and resuming at step k replays exactly what was not yet seen.

Every random draw of an image's transform (its S, crop position, flip) comes from a seed derived
from (seed, epoch, position), never from a worker's RNG: the result does not depend on the number
of workers or ranks, nor on where a run was resumed.

An unreadable file does not stop an epoch: the worker returns its path and reason, the batch is
made of the readable images, and the trainer counts and reports it (or fails, if asked to).

What an item carries besides the image and its class is the objective's business (a box target
for Appendix A's regressor): a ``targets(index, drawn)`` function given to the dataset adds its
fields to the item, where ``drawn`` says how the image was transformed; tensors are batched.
"""

from __future__ import annotations

import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import VGGError
from ..progress import progress as progress_bar
from .images import ImageReadError, source_size
from .source import Source
from .transforms import TrainTransform, center_crop, rescale


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class TrainBatches(Sampler):
    """This rank's share of every global batch of an epoch, as lists of (index, sample seed)."""

    def __init__(self, n: int, global_batch: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise VGGError(f"global batch {global_batch} is not divisible by the {world_size} processes")
        if n < global_batch:
            raise VGGError(f"the training set has {n} images, fewer than one global batch of {global_batch}")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = n // global_batch  # the tail is dropped: every step has a full batch
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self):
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for step in range(self.start_step, self.steps_per_epoch):
            start = step * self.global_batch + self.rank * self.local_batch
            yield [
                (int(perm[p]), sample_seed(self.seed, self.epoch, p))
                for p in range(start, start + self.local_batch)
            ]


class TrainImages(Dataset):
    """Item (index, seed) -> dict(image=uint8 (3, crop, crop), label, index, alpha, and the fields
    of ``targets(index, drawn)``) or dict(error=...)."""

    def __init__(self, source: Source, transform: TrainTransform, targets=None):
        self.source, self.transform, self.targets = source, transform, targets

    def __len__(self):
        return len(self.source)

    def __getitem__(self, item):
        index, seed = item
        label, rng = self.source.samples[index][1], np.random.default_rng(seed)
        try:
            s = self.transform.draw_scale(rng)
            arr, drawn = self.transform.apply(self.source.read(index, min_side=s), s, rng)
        except ImageReadError as e:
            return dict(error=(e.path, e.reason), index=index)
        out = dict(
            image=torch.from_numpy(arr).permute(2, 0, 1),
            label=label,
            index=index,
            alpha=torch.from_numpy(drawn["alpha"]),
        )
        return out if self.targets is None else dict(out, **self.targets(index, drawn))


BATCH_NAMES = {"image": "images", "label": "labels", "index": "indices"}


def collate_images(items: list[dict]) -> dict:
    """Readable items -> one batch (tensors stacked, the rest as lists); unreadable ones -> ``bad``."""
    good = [it for it in items if "error" not in it]
    batch = dict(
        images=None,
        labels=torch.zeros(0, dtype=torch.long),
        indices=torch.zeros(0, dtype=torch.long),
        alpha=None,
        bad=[it["error"] for it in items if "error" in it],
    )
    for key in good[0] if good else {}:
        values = [it[key] for it in good]
        if isinstance(values[0], torch.Tensor):
            value = torch.stack(values)
        elif isinstance(values[0], int):
            value = torch.tensor(values, dtype=torch.long)
        else:
            value = values
        batch[BATCH_NAMES.get(key, key)] = value
    return batch


def _worker_init(_):
    torch.set_num_threads(1)  # decoding workers: one thread each, the cores are the parallelism
    # A scheduler may signal every process of the job (SLURM does): the stop is the training loop's
    # to make (checkpoint, exit 130); a worker that died of it would take the run down instead.
    # Workers still end with their parent (the loader's watchdog).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_loader(
    source: Source,
    transform: TrainTransform,
    sampler: TrainBatches,
    workers: int = 0,
    pin_memory: bool = False,
    targets=None,
) -> DataLoader:
    return DataLoader(
        TrainImages(source, transform, targets),
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


class SourceImages(Dataset):
    """Item i -> ``self.read(index, picture)`` for image ``index = indices[i]`` of a source decoded
    at about ``min_side``, or ``self.unreadable(index, reason)`` for one that cannot be decoded."""

    min_side = 64

    def __init__(self, source: Source, indices=None):
        self.source = source
        self.indices = list(range(len(source))) if indices is None else list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        try:
            img = self.source.read(index, min_side=self.min_side)
        except ImageReadError as e:
            return self.unreadable(index, e.reason)
        return self.read(index, img)

    def name(self, index: int) -> str:
        return self.source.samples[index][0]


class _TestImages(SourceImages):
    """Test-time items: `_make` turns the picture into the item's tensors; an unreadable image,
    or one that fails there (e.g. too large once rescaled), is an item with its error, so that
    this image, not the whole run, fails."""

    min_side = None

    def read(self, index, img):
        try:
            return dict(self._make(img, index), label=self.source.samples[index][1], index=index)
        except VGGError as e:
            return self.unreadable(index, str(e))

    def unreadable(self, index, reason):
        return dict(error=(self.name(index), reason), index=index, label=self.source.samples[index][1])


def _chw(img) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


class CenterCrops(_TestImages):
    """Item i -> the centre crop of the image rescaled to Q (per-epoch validation, §4.1), plus the
    fields of ``targets(index, drawn)`` where ``drawn`` gives the source size, the rescaled size
    and the crop's top-left corner in the rescaled image."""

    def __init__(self, source: Source, q: int, crop: int, indices=None, targets=None):
        super().__init__(source, indices)
        self.min_side, self.crop, self.targets = q, crop, targets

    def _make(self, img, index):
        scaled = _chw(rescale(img, self.min_side))
        out = dict(image=center_crop(scaled, self.crop))
        if self.targets is not None:
            h, w = scaled.shape[-2:]
            drawn = dict(
                src_size=source_size(img),
                size=(w, h),
                x=(w - self.crop) // 2,
                y=(h - self.crop) // 2,
                flipped=False,
            )
            out.update(self.targets(index, drawn))
        return out


def center_loader(
    source: Source, q: int, crop: int, batch_size: int, workers: int = 0, indices=None, targets=None
):
    return DataLoader(
        CenterCrops(source, q, crop, indices, targets),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_images,
        worker_init_fn=_worker_init,
    )


class ScaledImages(_TestImages):
    """Item i -> the whole image rescaled to each test scale Q (§3.2), uint8 (3, H, W) tensors:
    one decode serves every scale."""

    def __init__(self, source: Source, scales, indices=None):
        super().__init__(source, indices)
        self.scales = sorted(int(q) for q in scales)
        self.min_side = self.scales[-1]

    def _make(self, img, index):
        return dict(images={q: _chw(rescale(img, q)) for q in self.scales}, src_size=source_size(img))


def scaled_loader(source: Source, scales, workers: int = 0, indices=None) -> DataLoader:
    """One image per item (test images differ in size; nothing is padded)."""
    return DataLoader(
        ScaledImages(source, scales, indices),
        batch_size=None,
        num_workers=workers,
        worker_init_fn=_worker_init,
        prefetch_factor=8 if workers > 0 else None,
    )


class _Check(SourceImages):
    def read(self, index, img):
        return (self.name(index), None, img.size)

    def unreadable(self, index, reason):
        return (self.name(index), reason, None)


def check_files(images, workers: int = 0, progress: bool = False) -> list[tuple[str, str]]:
    """Decode every image (a Source, or a list of paths); return (name, reason) for each one
    that cannot be read."""
    source = images if isinstance(images, Source) else Source([(str(p), 0) for p in images], [], "")
    loader = DataLoader(_Check(source), batch_size=None, num_workers=workers, worker_init_fn=_worker_init)
    it = progress_bar(loader, len(source), "check", progress)
    return [(p, reason) for p, reason, _ in it if reason is not None]
