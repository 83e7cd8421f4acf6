"""The straightforward training step that the lean `TrainingModel` step is held to and timed against.

It computes the same losses as `tfrf.training.TrainingModel`, written as the equations read:

- one VGG19 pass, inside the gradient tape, on `concat([target, generated, sources])` to the
  deepest layer any loss reads (the lean step runs the gradient through the generated images
  only, and each part only as deep as its losses);
- the correctness loss's best match over the whole similarity matrix (no tiles);
- the generator built with `impl="reference"`: its fusing blocks cast the flows to the compute
  dtype, run R on a concatenated copy of f_t per source and fuse in float64 in training too.

Used by tests/test_lean_step.py (equal losses and gradients) and `python -m
tfrf.benchmarks.train_step --steps-compared lean reference`.
"""
from __future__ import annotations

import tensorflow as tf

from tfrf import losses
from tfrf.models import rebuild_generator
from tfrf.ops import fold_sources, unfold_sources
from tfrf.training import runner
from tfrf.training.model import TrainingModel
from tfrf.training.networks import Networks


class ReferenceTrainingModel(TrainingModel):
    """`TrainingModel` with the straightforward VGG pass and untiled correctness loss; give it a
    generator built with `impl="reference"` (`compile_reference_stage` does)."""

    correctness_tile = None

    def _vgg_features(self, target, sources, generated=None):
        """One VGG pass over concat([target, generated?, sources])."""
        parts = [target] + ([generated] if generated is not None else []) + [fold_sources(sources)]
        parts = [tf.cast(part, tf.float32) for part in parts]
        features = losses.split_features(self.vgg(tf.concat(parts, axis=0)), [tf.shape(part)[0] for part in parts])
        target_features, source_features = features[0], features[-1]
        generated_features = features[1] if generated is not None else None
        batch_and_sources = tf.shape(sources)[:2]
        source_features = {name: unfold_sources(value, batch_and_sources) for name, value in source_features.items()}
        return target_features, generated_features, source_features


def reference_networks(networks: Networks) -> Networks:
    """The same networks with the generator rebuilt with `impl="reference"` (a copy of its
    weights, variables in the same order; discriminator and VGG shared)."""
    return Networks(rebuild_generator(networks.generator, "reference"), networks.discriminator, networks.vgg)


def compile_reference_stage(stage: str, networks: Networks, config, **kwargs) -> ReferenceTrainingModel:
    """`tfrf.training.runner.compile_stage` of the reference step on a reference copy of `networks`."""
    return runner.compile_stage(stage, reference_networks(networks), config, model_class=ReferenceTrainingModel,
                                **kwargs)
