"""The generator as every export builds it: pure-TF warp, weights loaded, variables created."""
from __future__ import annotations

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


def export_generator(config: ModelConfig, weights: Optional[str] = None, tflite: bool = False):
    """A built generator of `config.architecture` for export, with `weights` loaded.

    Args:
        config: the model configuration; made export-safe with `export_config`.
        weights: anything `tfrf.runs.load_weights` takes (a run directory, a checkpoint prefix
            such as RUN/checkpoints/full/ckpt-N, a `.weights.h5`) of a generator trained with
            this configuration (any warp backend); None keeps the random initialisation (tests,
            benchmarks).
        tflite: build the TFLite variant (no float64 accumulation).

    Raises:
        FileNotFoundError: when `weights` names no file or checkpoint.
        ValueError: when the weights do not fit the config.
    """
    from tfrf import runs

    return runs.load_generator(export_config(config, tflite=tflite), weights)
