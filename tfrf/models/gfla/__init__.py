"""GFLA (Ren et al., CVPR 2020) in TensorFlow: the single-source baseline of the residual-flow
paper, runnable on CPU, in TF-Serving and TFLite (its CUDA-only layers are pure-TF ops here).

`GFLAGenerator` is the model; the blocks, the local attention and the three sub-networks live in
their own modules. `GFLAGenerator.load_torch_weights` (`tfrf.models.gfla.torch_state`) loads GFLA's
official `latest_net_G.pth`; `tfrf.models.gfla_convert` builds a generator holding it.
"""
from tfrf.models.gfla.attention import LocalAttention
from tfrf.models.gfla.blocks import DecoderBlock, EncoderBlock, JumpBlock, ResidualBlock
from tfrf.models.gfla.flow import GFLAFlowNetwork
from tfrf.models.gfla.generator import GFLAGenerator
from tfrf.models.gfla.source import GFLASourceEncoder
from tfrf.models.gfla.target import GFLATargetNetwork

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "GFLAFlowNetwork",
    "GFLAGenerator",
    "GFLASourceEncoder",
    "GFLATargetNetwork",
    "JumpBlock",
    "LocalAttention",
    "ResidualBlock",
]
