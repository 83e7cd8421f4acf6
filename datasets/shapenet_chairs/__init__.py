"""ShapeNet chairs (Sun et al. 2018 benchmark files) TFDS builder."""
from tfrf.datasets.shapenet_chairs.shapenet_chairs_dataset_builder import ShapenetChairs, shapenet_view_bins

__all__ = ["ShapenetChairs", "shapenet_view_bins"]
