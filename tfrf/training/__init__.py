"""Two-stage training (Lu et al. AAAI 2022, sec. 3.3): config presets, the Keras training model
with its custom `train_step`, callbacks, the stage runner and one run API (`tfrf.training.run`)."""
from tfrf.training.config import STAGES, TRAIN_PRESETS, LossWeights, TrainConfig
from tfrf.training.model import TrainingModel
from tfrf.training.networks import build_networks

__all__ = ["STAGES", "TRAIN_PRESETS", "LossWeights", "TrainConfig", "TrainingModel", "build_networks"]
