"""`snapshot(x)`: a copy of a network's input that TensorFlow 2.15's graph rewrites keep.

TF 2.15's oneDNN remapper can feed a layer whose input comes straight from a `tf.data` iterator
(inside `fit` / `evaluate` / `predict`) with another field of the same batch; a single-output
`Snapshot` node in front of the first layer stops it (grappler would fold an `Identity`). The op
has no registered gradient in TF 2.15, and the generator's adversarial loss differentiates through
the discriminator's input, so the identity gradient is registered here (once, if nobody has).
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.python.framework import ops


def _register_gradient() -> None:
    try:
        ops.gradient_registry.lookup("Snapshot")
    except LookupError:
        ops.RegisterGradient("Snapshot")(lambda op, gradient: gradient)


_register_gradient()


def snapshot(tensor) -> tf.Tensor:
    """A copy of `tensor` (same value, identity gradient) as its own graph node."""
    return tf.raw_ops.Snapshot(input=tf.convert_to_tensor(tensor))
