"""Keras layers of the generator and discriminator."""
from tfrf.layers.blocks import ResBlock, ResBlockDown, ResBlockUp
from tfrf.layers.fusing import ResidualFusingBlock
from tfrf.layers.normalization import InstanceNormalization

__all__ = ["InstanceNormalization", "ResBlock", "ResBlockDown", "ResBlockUp", "ResidualFusingBlock"]
