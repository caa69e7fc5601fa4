"""Engines: training (config, schedule, checkpoints, distributed) as functions returning dicts."""

from .config import TrainConfig, load_config, validate
from .schedule import PlateauSchedule
from .train import train

__all__ = ["TrainConfig", "load_config", "validate", "PlateauSchedule", "train"]
