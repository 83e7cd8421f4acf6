"""A Keras layer built from a `ModelConfig`, serialisable through it."""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from tfrf.config import ModelConfig
from tfrf.layers import ResBlockDown, SpaceToDepthResBlockDown
from tfrf.layers.impl import check_impl


class ConfiguredModel(tf.keras.Model):
    """A network built from a `ModelConfig` (or its dict), round-tripped by `get_config` with the
    constructor arguments `constructor_arguments()` names."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = ModelConfig.from_dict(config) if isinstance(config, Mapping) else config

    def constructor_arguments(self) -> dict:
        """The constructor's arguments other than `config` and `name`, for `get_config`."""
        return {}

    def get_config(self):
        return {"config": self.config.to_dict(), **self.constructor_arguments(), "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        return cls(ModelConfig.from_dict(config.pop("config")), **config)


class ConfiguredLayer(tf.keras.layers.Layer):
    """Holds `self.config` (a `ModelConfig`, or its dict) and the `impl` its layers are built with
    (`tfrf.layers.impl`), and round-trips both in `get_config`."""

    def __init__(self, config: ModelConfig, impl: str = "default", **kwargs):
        super().__init__(**kwargs)
        self.config = ModelConfig.from_dict(config) if isinstance(config, Mapping) else config
        self.impl = check_impl(impl, self.name)

    def block(self, kind, filters: int, name: str, **kwargs):
        """A residual block `kind` (`tfrf.layers.ResBlock`, ...) with the config's LeakyReLU slope
        and this layer's `impl`."""
        return kind(filters, leaky_relu_slope=self.config.leaky_relu_slope, impl=self.impl, name=name, **kwargs)

    def first_block(self, filters: int, name: str):
        """The block that takes a network's full-resolution input to H/2: `ResBlockDown` (the paper)
        or, with `config.full_resolution == "space_to_depth"`, `SpaceToDepthResBlockDown` (the same
        output shape, its convolutions at H/2)."""
        space_to_depth = self.config.full_resolution == "space_to_depth"
        return self.block(SpaceToDepthResBlockDown if space_to_depth else ResBlockDown, filters, name)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "impl": self.impl}


def flow_dtype():
    """The dtype policy of a flow head: "float32" under a mixed float16/bfloat16 policy (a
    float16 flow resolves only 1/32 px at |flow| >= 32, so the flows are computed and kept in
    float32), else None (the global policy)."""
    if tf.keras.mixed_precision.global_policy().compute_dtype in ("float16", "bfloat16"):
        return "float32"
    return None
