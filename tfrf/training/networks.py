"""The networks of a training run: generator, discriminator and the VGG19 features of the losses."""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

from tfrf import losses
from tfrf.training.config import STAGES, LossWeights, TrainConfig


@dataclasses.dataclass
class Networks:
    """The networks of a run, built (under the strategy's scope when distributed)."""

    generator: tf.keras.Model
    discriminator: tf.keras.Model
    vgg: Optional[tf.keras.layers.Layer]


def create_networks(config: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Networks:
    """Generator, discriminator and the VGG features the loss weights need, seeded by `config.seed`."""
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        return Networks(*build_networks(config.model, config.vgg_weights,
                                        [config.stage_loss_weights(stage) for stage in STAGES], config.num_sources,
                                        discriminator=config.discriminator,
                                        discriminator_blocks=config.discriminator_blocks))


def check_vgg_weights(config: TrainConfig, flag: str = "--vgg-weights") -> None:
    """Refuse, before anything is created, VGG19 weights the run's losses need and this machine
    lacks (`tfrf.losses.vgg.check_weights_available`); nothing when no loss reads VGG19."""
    from tfrf.losses.vgg import check_weights_available

    weights = [config.stage_loss_weights(stage) for stage in STAGES]
    if any(getattr(w, term) > 0 for w in weights for term in ("correctness", "perceptual", "style")):
        check_weights_available(config.vgg_weights, flag)


def vgg_layers(loss_weights: Sequence[LossWeights], levels: Sequence[str]) -> Tuple[str, ...]:
    """The VGG19 layers the non-zero VGG losses of any of `loss_weights` read, shallow first."""
    layers = set()
    for weights in loss_weights:
        if weights.correctness > 0:
            layers |= {losses.CORRECTNESS_LAYERS[level] for level in levels}
        if weights.perceptual > 0 or weights.style > 0:
            layers |= set(losses.PERCEPTUAL_LAYERS)
    return tuple(name for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1") if name in layers)


def build_networks(model_config, vgg_weights: Optional[str] = None,
                   loss_weights: Union[None, LossWeights, Sequence[LossWeights]] = None, num_sources: int = 1,
                   discriminator: str = "rf", discriminator_blocks: Optional[int] = None):
    """Generator (`tfrf.models.build_generator`), discriminator (`discriminator`: "rf" or "gfla")
    and the VGG extractor the loss weights need (None if none), built.

    `loss_weights` may be one `LossWeights` or those of both stages (the VGG serves their union).
    The generator is built with min(num_sources, its `max_sources`) sources. Create them under
    the strategy's scope when training distributed.
    """
    from tfrf.models import build_discriminator, build_generator

    if loss_weights is None:
        loss_weights = [LossWeights()]
    elif isinstance(loss_weights, LossWeights):
        loss_weights = [loss_weights]
    generator = build_generator(model_config)
    limit = getattr(generator, "max_sources", None)
    generator(generator.dummy_inputs(1, num_sources if limit is None else min(num_sources, limit)))
    critic = build_discriminator(model_config, discriminator, discriminator_blocks)
    critic(tf.zeros([1, model_config.image_height, model_config.image_width, 3]))
    layers = vgg_layers(loss_weights, generator.flow_extractor.levels)
    vgg = losses.VGGFeatures(list(layers), weights=vgg_weights) if layers else None
    return generator, critic, vgg
