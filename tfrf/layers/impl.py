"""Which implementation a layer traces, chosen where the network is built.

- "default": training and inference.
- "export": the same function in fewer, larger TFLite builtins for static shapes (equal up to
  float32 rounding; tested). `tfrf.export.tflite` builds its generator with it.
- "reference": the straightforward form of the residual fusing block's training path (flows in the
  compute dtype, R on a concatenated copy of f_t per source, float64 fusion), which the default
  path is tested against (`tests/reference_step.py`). Other layers trace their default.

A layer's `impl` is a constructor argument, stored in its config; a built network never changes it:
build another with `tfrf.models.build_generator(config, impl=...)` and copy the weights
(`tfrf.models.rebuild_generator`).
"""
from __future__ import annotations

IMPLS = ("default", "export", "reference")


def check_impl(impl: str, owner: str) -> str:
    """`impl`, or a ValueError naming `owner` and the choices."""
    if impl not in IMPLS:
        raise ValueError(f"{owner}: impl must be one of {IMPLS}, got {impl!r}")
    return impl
