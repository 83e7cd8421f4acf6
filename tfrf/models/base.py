"""A Keras layer built from a `ModelConfig`, serialisable through it."""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from tfrf.config import ModelConfig


class ConfiguredLayer(tf.keras.layers.Layer):
    """Holds `self.config` (a `ModelConfig`, or its dict) and round-trips it in `get_config`."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = ModelConfig.from_dict(config) if isinstance(config, Mapping) else config

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}


def flow_dtype():
    """The dtype policy of a flow head: "float32" under a mixed float16/bfloat16 policy (a
    float16 flow resolves only 1/32 px at |flow| >= 32, so the flows are computed and kept in
    float32), else None (the global policy)."""
    if tf.keras.mixed_precision.global_policy().compute_dtype in ("float16", "bfloat16"):
        return "float32"
    return None
