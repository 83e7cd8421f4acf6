"""Keras layers of the generator and discriminator."""
from tfrf.layers.activations import LeakyReLU
from tfrf.layers.blocks import ResBlock, ResBlockDown, ResBlockUp, SpaceToDepthResBlockDown
from tfrf.layers.fusing import ResidualFusingBlock
from tfrf.layers.normalization import InstanceNormalization
from tfrf.layers.spectral_norm import SpectralNormalization

__all__ = ["InstanceNormalization", "LeakyReLU", "ResBlock", "ResBlockDown", "ResBlockUp", "ResidualFusingBlock",
           "SpaceToDepthResBlockDown", "SpectralNormalization"]
