"""The paper's learning-rate rule (§3.1): divide the rate by 10 when validation accuracy stops
improving; after the rate has been decreased 3 times, the next plateau ends training.

With `milestones` (``--lr-milestones 6,9``) the rate is divided after those epochs instead, and the
epoch cap ends training: a fixed schedule, so that nets compared with each other get the same
number of drops at the same epochs (the plateau rule drops earlier for nets that plateau earlier).

``--lr-warmup E`` raises the rate linearly, step by step, from lr/N to lr over the first E epochs
(N steps), then leaves it to the rule above. Not in the paper: a warm-started net (§3.1) joins
trained layers to random ones, and at a rate tuned for training from scratch its first large
gradients can throw it to a constant output (measured: D from A at lr 0.05 sat at chance for two
epochs, docs/TRAINING.md). The factor is a function of the position alone, so resume stays exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class PlateauSchedule:
    lr: float
    factor: float = 0.1
    patience: int = 2
    max_drops: int = 3
    min_delta: float = 0.0
    best: float = float("inf")
    bad_epochs: int = 0
    drops: int = 0
    epochs_seen: int = 0
    milestones: tuple[int, ...] = field(default=(), compare=False)  # from the config, not the state

    def step(self, val_error: float) -> dict:
        """Record one epoch's validation error (lower is better). Returns dict(lr, improved,
        dropped, stop)."""
        improved = val_error < self.best - self.min_delta
        dropped = stop = False
        self.epochs_seen += 1
        if improved:
            self.best, self.bad_epochs = val_error, 0
        if self.milestones:
            dropped = self.epochs_seen in self.milestones
            if dropped:
                self.lr *= self.factor
                self.drops += 1
        elif not improved:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                if self.drops < self.max_drops:
                    self.lr *= self.factor
                    self.drops += 1
                    self.bad_epochs = 0
                    dropped = True
                else:
                    stop = True
        return dict(lr=self.lr, improved=improved, dropped=dropped, stop=stop)

    @property
    def ended(self) -> bool:
        """Whether the rule has stopped training: a resumed run that ended on a plateau stays ended."""
        return self.drops >= self.max_drops and self.bad_epochs > self.patience

    def state_dict(self) -> dict:
        return {k: (v if v != float("inf") else None) for k, v in asdict(self).items() if k != "milestones"}

    @classmethod
    def from_state(cls, state: dict, milestones: tuple[int, ...] = ()) -> "PlateauSchedule":
        state = dict(state, milestones=tuple(milestones))
        if state.get("best") is None:
            state["best"] = float("inf")
        return cls(**state)


def warmup_factor(warmup_epochs: float, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The fraction of the rate used by step `step` (0-based) of epoch `epoch` (0-based)."""
    total = warmup_epochs * steps_per_epoch
    if total <= 0:
        return 1.0
    return min(1.0, (epoch * steps_per_epoch + step + 1) / total)
