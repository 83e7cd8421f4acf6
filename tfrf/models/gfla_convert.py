"""GFLA's official generator checkpoints (`latest_net_G.pth`) into a new `GFLAGenerator`.

`convert_gfla_state_dict(state, config)` builds `GFLAGenerator(config)` and loads the state dict
into it; the key table, the reading and the assigning are `tfrf.models.gfla.torch_state`'s
(`read_state_dict`, `load_torch_weights`, `torch_key_plan` are importable from here too).
"""
from __future__ import annotations

from tfrf.config import ModelConfig
from tfrf.models.gfla.generator import GFLAGenerator
from tfrf.models.gfla.torch_state import load_torch_weights, read_state_dict, torch_key_plan

__all__ = ["convert_gfla_state_dict", "load_torch_weights", "read_state_dict", "torch_key_plan"]


def convert_gfla_state_dict(state, config: ModelConfig):
    """A built `GFLAGenerator(config)` holding GFLA's weights from `state` (see `read_state_dict`)."""
    generator = GFLAGenerator(config.replace(architecture="gfla"))
    generator(generator.dummy_inputs(), training=False)
    load_torch_weights(generator, state)
    return generator
