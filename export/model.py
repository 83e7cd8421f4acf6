"""The generator as every export builds it: pure-TF warp, weights loaded, variables created."""
from __future__ import annotations

import json
import os
from typing import Optional

from tfrf.config import ModelConfig


def export_config(config: ModelConfig, tflite: bool = False) -> ModelConfig:
    """`config` made export-safe.

    Args:
        config: the trained model's configuration (any warp backend).
        tflite: also switch off the float64 accumulation of the K-fusion
            (`order_invariant_fusion`): TFLite has no float64 kernels. The output then depends
            on the order of the sources at float32 rounding level only.

    Returns:
        The config with `warp_backend="gather"` (and `order_invariant_fusion=False` for TFLite).
    """
    changes = {"warp_backend": "gather"}
    if tflite:
        changes["order_invariant_fusion"] = False
    return config.replace(**changes)


def load_config(preset: str, config_path: Optional[str] = None, **overrides) -> ModelConfig:
    """The named preset, or the ModelConfig JSON at `config_path` (e.g. a run's config.json),
    with field overrides (None values are ignored)."""
    if config_path:
        with open(config_path, encoding="utf-8") as stream:
            config = ModelConfig.from_dict(json.load(stream))
    else:
        config = ModelConfig.preset(preset)
    overrides = {key: value for key, value in overrides.items() if value is not None}
    return config.replace(**overrides) if overrides else config


def build_generator(config: ModelConfig, weights: Optional[str] = None, tflite: bool = False):
    """A built `tfrf.models.Generator` for export, with `weights` loaded.

    Args:
        config: the model configuration; made export-safe with `export_config`.
        weights: `.weights.h5` file or TF checkpoint prefix of a generator trained with this
            configuration (any warp backend); None keeps the random initialisation (tests,
            benchmarks).
        tflite: build the TFLite variant (no float64 accumulation).

    Raises:
        FileNotFoundError: when `weights` names no file or checkpoint.
    """
    from tfrf.models import Generator

    generator = Generator(export_config(config, tflite=tflite))
    generator(generator.dummy_inputs(batch_size=1, num_sources=1), training=False)
    if weights is not None:
        if not (os.path.exists(weights) or os.path.exists(weights + ".index")):
            raise FileNotFoundError(f"generator weights {weights} do not exist")
        generator.load_weights(weights)
    return generator
