"""Folding the K sources into the batch: `[B, K, ...]` <-> `[B*K, ...]`.

Per-source networks run once on the folded batch, so their weights are shared across sources
and one graph serves every K (no Python loop over sources).
"""
from __future__ import annotations

import tensorflow as tf


def fold_sources(x: tf.Tensor) -> tf.Tensor:
    """`[B, K, ...]` -> `[B*K, ...]`."""
    shape = tf.shape(x)
    return tf.reshape(x, tf.concat([[-1], shape[2:]], axis=0))


def unfold_sources(x: tf.Tensor, batch_and_sources: tf.Tensor) -> tf.Tensor:
    """`[B*K, ...]` -> `[B, K, ...]` given the int tensor `[B, K]`."""
    return tf.reshape(x, tf.concat([batch_and_sources, tf.shape(x)[1:]], axis=0))
