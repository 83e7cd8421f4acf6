"""Market-1501 (pose-transfer keypoints) TFDS builder."""
from tfrf.datasets.market1501.market1501_dataset_builder import Market1501

__all__ = ["Market1501"]
