"""Low-level operations: flow warping."""
from tfrf.ops.sources import fold_sources, unfold_sources
from tfrf.ops.warp import BACKENDS, base_grid, warp, warp_gather, warp_tfa

__all__ = ["BACKENDS", "base_grid", "fold_sources", "unfold_sources", "warp", "warp_gather", "warp_tfa"]
