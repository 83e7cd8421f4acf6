"""Low-level operations: flow warping, GFLA's block extraction and local-attention reshape."""
from tfrf.ops.block_extraction import extract_blocks
from tfrf.ops.gaussian_resample import gaussian_resample
from tfrf.ops.local_attention import local_attention_reshape
from tfrf.ops.sources import fold_sources, unfold_sources
from tfrf.ops.warp import BACKENDS, base_grid, warp, warp_gather, warp_tfa

__all__ = [
    "BACKENDS",
    "base_grid",
    "extract_blocks",
    "fold_sources",
    "gaussian_resample",
    "local_attention_reshape",
    "unfold_sources",
    "warp",
    "warp_gather",
    "warp_tfa",
]
