"""What a run tells the world after each epoch: a line on stdout (in a terminal and in logs
alike), a JSON record in ``log.jsonl`` (what ``vggnet plot`` and the experiment scripts read),
the unreadable files in ``bad_images.txt``, and TensorBoard scalars when asked. Rank 0 only."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import VGGError
from ..fileio import write_text

LOG, BAD = "log.jsonl", "bad_images.txt"


class RunLog:
    def __init__(self, run_dir, objective, enabled: bool = True, tensorboard: bool = False):
        self.run_dir, self.objective, self.enabled = Path(run_dir), objective, enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise VGGError(
                    "--tensorboard needs the tensorboard package: pip install 'vggnet[tensorboard]'"
                ) from None
            self.writer = SummaryWriter(str(self.run_dir / "tb"))

    def resume(self, history: list[dict]) -> None:
        """A resumed run's log is its checkpoint's history: an epoch whose line a kill cut off
        is not lost, and none is written twice."""
        if self.enabled:
            write_text(self.run_dir / LOG, "".join(json.dumps(r) + "\n" for r in history))

    def epoch(self, record: dict, bad: list[str]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        if bad:
            # surrogateescape: a file name that is not UTF-8 is written as the bytes it has on disk
            with open(self.run_dir / BAD, "a", encoding="utf-8", errors="surrogateescape") as f:
                f.write("".join(f"epoch {record['epoch']}: {b}\n" for b in bad))
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self.writer.add_scalar(key, value, record["epoch"])
        print(
            f"epoch {record['epoch']:>3}  lr {record['lr']:.0e}  loss {record['train_loss']:.3f}  "
            f"{self.objective.epoch_line(record)}  {record['images_per_s']:.0f} img/s"
            + (f"  ({len(bad)} unreadable skipped)" if bad else "")
            + ("  lr/10" if record["lr_dropped"] else ""),
            flush=True,
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
