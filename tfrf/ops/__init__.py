"""Low-level operations: flow warping."""
from tfrf.ops.warp import BACKENDS, base_grid, warp, warp_gather, warp_tfa

__all__ = ["BACKENDS", "base_grid", "warp", "warp_gather", "warp_tfa"]
