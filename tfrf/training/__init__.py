"""Two-stage training (Lu et al. AAAI 2022, sec. 3.3): config presets, the Keras training model
with its custom `train_step`, callbacks, the stage runner and held-out evaluation."""
from tfrf.training.config import STAGES, TRAIN_PRESETS, LossWeights, TrainConfig
from tfrf.training.model import TrainingModel, build_networks

__all__ = ["STAGES", "TRAIN_PRESETS", "LossWeights", "TrainConfig", "TrainingModel", "build_networks"]
