import numpy as np
import pytest
import torch

from helpers import make_folder, write_image
from vggnet.data.datasets import image_folder
from vggnet.data.loaders import TrainBatches, check_files, train_loader
from vggnet.data.stats import compute_stats
from vggnet.data.transforms import TrainTransform
from vggnet.errors import VGGError


def test_stats_on_known_images(tmp_path):
    for i in range(6):
        write_image(tmp_path / "d" / "red" / f"{i}.png", (20, 16), colour=(255, 0, 0))
        write_image(tmp_path / "d" / "blue" / f"{i}.png", (20, 16), colour=(0, 0, 255))
    stats = compute_stats(image_folder(tmp_path / "d"), workers=2)
    assert np.allclose(stats["mean_rgb"], [127.5, 0, 127.5])
    # Two equally likely colours: one direction of variance, (255^2/4)*2 along (1,0,-1)/sqrt(2).
    assert np.isclose(stats["pca_eigval"][0], 2 * 127.5**2)
    assert np.allclose(stats["pca_eigval"][1:], 0, atol=1e-6)
    v = np.asarray(stats["pca_eigvec"])[:, 0]
    assert np.allclose(np.abs(v), [2**-0.5, 0, 2**-0.5])
    sample = compute_stats(image_folder(tmp_path / "d"), max_images=4, seed=3)
    assert sample["images"] == 4 and sample == compute_stats(
        image_folder(tmp_path / "d"), max_images=4, seed=3
    )


def batches(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_order_is_deterministic_resumable_and_changes_per_epoch():
    s = TrainBatches(103, 10, seed=7)
    assert len(s) == 10
    full = batches(s, 0)
    assert full == batches(TrainBatches(103, 10, seed=7), 0)
    assert batches(s, 0, start=4) == full[4:]
    assert batches(s, 1) != full
    seen = [i for b in full for i, _ in b]
    assert len(set(seen)) == 100


def test_distributed_shards_are_disjoint_and_make_the_global_batch():
    single = batches(TrainBatches(64, 8, seed=1), 2)
    shards = [batches(TrainBatches(64, 8, seed=1, rank=r, world_size=4), 2) for r in range(4)]
    for step, global_batch in enumerate(single):
        parts = [shard[step] for shard in shards]
        assert sum(parts, []) == global_batch  # same images, same per-image seeds
        assert all(len(p) == 2 for p in parts)
    flat = [i for shard in shards for b in shard for i, _ in b]
    assert len(flat) == len(set(flat)) == 64
    with pytest.raises(VGGError, match="not divisible"):
        TrainBatches(64, 10, world_size=4)
    with pytest.raises(VGGError, match="fewer than one global batch"):
        TrainBatches(5, 8)


def test_workers_do_not_change_the_data_and_bad_files_are_skipped(tmp_path):
    root = make_folder(tmp_path / "d", per_class=6, size=(50, 40), ext=".jpg")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff junk")
    src = image_folder(root)
    t = TrainTransform("32:48", 32)

    def run(workers):
        s = TrainBatches(len(src), 4, seed=5)
        s.set_epoch(1)
        out = list(train_loader(src, t, s, workers=workers))
        return out

    a, b = run(0), run(2)
    assert len(a) == len(b) == len(src) // 4
    for x, y in zip(a, b):
        assert x["bad"] == y["bad"]
        assert torch.equal(x["images"], y["images"]) and torch.equal(x["labels"], y["labels"])
    bad = [e for batch in a for e in batch["bad"]]
    images = sum(len(batch["labels"]) for batch in a)
    if bad:  # the broken file was drawn this epoch (it is unless dropped with the tail)
        assert bad[0][0].endswith("broken.jpg") and images == len(src) // 4 * 4 - 1
    assert all(
        batch["images"].dtype == torch.uint8 and batch["images"].shape[1:] == (3, 32, 32)
        for batch in a
        if batch["images"] is not None
    )
    assert check_files([p for p, _ in src.samples], workers=2) == [
        (str(root / "b" / "broken.jpg"), check_files([str(root / "b" / "broken.jpg")])[0][1])
    ]
