"""DeepFashion In-shop (pose-transfer split) TFDS builder."""
from tfrf.datasets.deepfashion.deepfashion_dataset_builder import DeepFashionInShop

__all__ = ["DeepFashionInShop"]
