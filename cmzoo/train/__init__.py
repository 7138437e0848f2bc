"""Training: the consistency-training loop, checkpoints, reconstruction pre-training."""

from cmzoo.config import TrainConfig, make_config
from cmzoo.train.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "make_config", "train"]
