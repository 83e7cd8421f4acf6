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
        ValueError: when the weights do not fit the config, or a weight is NaN or infinite (the
            error names the first such variable and the weights).
    """
    from tfrf import runs

    generator = runs.load_generator(export_config(config, tflite=tflite), weights)
    if weights is not None:
        check_finite(generator, runs.resolve_weights(weights))
    return generator


def check_finite(generator, weights: str) -> None:
    """Raises a ValueError naming the first variable of `generator` that holds a NaN or an
    infinity, and `weights`, where it was loaded from."""
    from tfrf.training.callbacks import first_non_finite, variable_name

    variable = first_non_finite(generator.variables)
    if variable is not None:
        raise ValueError(f"weights {weights}: {variable_name(variable)} holds NaN or inf values (a diverged run); "
                         "nothing is exported. Export an earlier checkpoint (--weights RUN/checkpoints/STAGE/ckpt-N)")
