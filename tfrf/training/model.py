"""The two-stage training model: a `keras.Model` whose `train_step` trains the generator.

Stage "flow" (paper sec. 3.3, stage 1) warms up the flow confidence extractor alone on
L_flow = λcor·L_cor + λreg·L_reg over the generator's flow levels. Stage "full" (stage 2) trains every
generator variable on L_flow + L_con + L_adv and the discriminator on its adversarial loss.
The variables of each update are chosen explicitly; no `trainable` flag is toggled.

Any generator of `tfrf.models.build_generator` trains here (the residual-flow `Generator` and
GFLA's `GFLAGenerator`): what differs is asked of its flow extractor — the flow levels
(`levels`), the affine-regularisation window per level (`affine_patch_sizes`) and the variables
the flow losses reach (`flow_variables()`) — and the loss terms come from the config.

`compile()` takes both optimisers; `train_step` delegates to `train_generator` /
`train_discriminator` with one generator pass per step (the discriminator trains on the same,
gradient-stopped, fake batch); losses are `Mean` trackers; `test_step` runs the same loss code.

The step is lean: VGG19 runs with a gradient on the generated images only, and each part of the
batch only as deep as its losses read (sources to relu4_1 for the correctness loss; the targets on
to relu5_1 where the perceptual and style losses need it); the correctness loss's best match is
computed in tiles of target positions, as a constant; the fusing blocks sum over K in the compute
dtype in training and run R without a concatenated copy of f_t per source; flows stay float32
under mixed precision. `tfrf.benchmarks.reference_step` holds the straightforward step (one VGG19
pass over everything, the whole similarity matrix, the fusing blocks' "reference" path), which
tests hold this one to and the train-step benchmark times beside it.

Under `tf.distribute`, every loss is a mean over the replica's batch; the optimised totals are
divided by `num_replicas_in_sync`, so the summed replica gradients are those of the global
mean. Under a `mixed_float16` policy the optimisers are wrapped in `LossScaleOptimizer`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Mapping, Tuple

import tensorflow as tf

from tfrf import losses
from tfrf.models.generator import INPUT_KEYS
from tfrf.ops import fold_sources, unfold_sources, warp
from tfrf.training.config import CORRECTNESS_SAMPLERS, FLOW_LOSS_TARGETS, STAGES, LossWeights

# Target positions per tile of the correctness loss's best match (see sampling_correctness_loss).
CORRECTNESS_TILE = 512
FLOW_TERMS = ("correctness", "regularization", "photometric")
CONTENT_TERMS = ("l1", "perceptual", "style")
VGG_TERMS = ("correctness", "perceptual", "style")


def _loss_scaled(optimizer):
    """Wrap `optimizer` in a LossScaleOptimizer under a float16 policy (once)."""
    if optimizer is None:
        return None
    policy = tf.keras.mixed_precision.global_policy()
    if policy.compute_dtype == "float16" and not isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
        return tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def split_example(data) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    """An example dict (docs/conventions.md) -> (generator inputs, target image)."""
    if isinstance(data, (tuple, list)):  # keras may wrap the dict as (x,)
        data = data[0]
    missing = [key for key in (*INPUT_KEYS, "target_image") if key not in data]
    if missing:
        raise ValueError(f"training batch lacks {missing}; expected keys {(*INPUT_KEYS, 'target_image')}")
    return {key: data[key] for key in INPUT_KEYS}, data["target_image"]


class TrainingModel(tf.keras.Model):
    """Generator + discriminator + frozen VGG19 features, trained in stage "flow" or "full".

    Args:
        generator: a `tfrf.models.Generator` or `GFLAGenerator` (`tfrf.models.build_generator`).
        discriminator: a `tfrf.models.Discriminator` or `GFLADiscriminator` (needed in stage "full" when the
            adversarial weight is non-zero).
        vgg: a `tfrf.losses.VGGFeatures` holding the layers the non-zero VGG losses read
            (relu3_1 and relu4_1 for correctness; relu1_1..relu5_1 for perceptual/style).
        stage: "flow" or "full".

    Call: `model(inputs)` -> the generated image, inference only.
    """

    correctness_tile = CORRECTNESS_TILE  # target positions per tile of the correctness loss

    def __init__(self, generator, discriminator=None, vgg=None, stage: str = "full", **kwargs):
        kwargs.setdefault("name", f"training_{stage}")
        super().__init__(**kwargs)
        if stage not in STAGES:
            raise ValueError(f"TrainingModel: stage must be one of {STAGES}, got {stage!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.vgg = vgg
        self.stage = stage
        self.loss_weights_ = LossWeights()
        self.gan_form = losses.DEFAULT_GAN_LOSS_FORM
        self.correctness_sampler = "bilinear"
        self.photometric_scales = 1
        self.flow_loss_on = "base"
        self.generator_optimizer = None
        self.discriminator_optimizer = None
        self.trackers: Dict[str, tf.keras.metrics.Mean] = {}

    # ----------------------------------------------------------------------------- setup
    def compile(self, generator_optimizer, discriminator_optimizer=None, loss_weights=None,
                gan_form: str = losses.DEFAULT_GAN_LOSS_FORM, correctness_sampler: str = "bilinear",
                photometric_scales: int = 1, flow_loss_on: str = "base", trains_flow: bool = True, **kwargs):
        """Set the optimisers, loss weights (`LossWeights` or a dict; paper defaults), GAN form, the correctness
        sampler, the photometric pyramid and stage 2's flow options (`TrainConfig.flow_loss_on`, `full_trains_flow`)."""
        super().compile(**kwargs)
        if (self._distribute_reduction_method is None
                and isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)):
            # The step returns tracker results, already global means on every replica; Keras's
            # default ("auto" = "sum" across workers) would report them times the replica count.
            self.distribute_reduction_method = "first"
        weights = LossWeights.coerce(loss_weights)
        if gan_form not in losses.GAN_LOSS_FORMS:
            raise ValueError(f"compile: gan_form must be one of {losses.GAN_LOSS_FORMS}, got {gan_form!r}")
        if correctness_sampler not in CORRECTNESS_SAMPLERS:
            raise ValueError(f"compile: correctness_sampler must be one of {CORRECTNESS_SAMPLERS}, "
                             f"got {correctness_sampler!r}")
        if flow_loss_on not in FLOW_LOSS_TARGETS:
            raise ValueError(f"compile: flow_loss_on must be one of {FLOW_LOSS_TARGETS}, got {flow_loss_on!r}")
        if self.stage == "flow":
            # Stage 1 trains on L_flow alone, whatever the content and adversarial weights say.
            weights = dataclasses.replace(weights, l1=0.0, perceptual=0.0, style=0.0, adversarial=0.0, saturation=0.0)
        needs_vgg = [term for term in VGG_TERMS if getattr(weights, term) > 0]
        if needs_vgg and self.vgg is None:
            raise ValueError(f"TrainingModel: the losses {needs_vgg} need VGG features; pass vgg=VGGFeatures(...) "
                             "or set their weights to 0")
        if needs_vgg:
            wanted = set()
            if weights.correctness > 0:
                wanted |= {losses.CORRECTNESS_LAYERS[level] for level in self.levels}
            if weights.perceptual > 0 or weights.style > 0:
                wanted |= set(losses.PERCEPTUAL_LAYERS)
            missing = sorted(wanted - set(self.vgg.layer_names))
            if missing:
                raise ValueError(f"TrainingModel: the VGG extractor lacks layers {missing} "
                                 f"(it has {list(self.vgg.layer_names)})")
        if self.stage == "full" and weights.adversarial > 0:
            if self.discriminator is None:
                raise ValueError("TrainingModel: stage 'full' with an adversarial weight needs a discriminator")
            if discriminator_optimizer is None:
                raise ValueError("TrainingModel: stage 'full' with an adversarial weight needs discriminator_optimizer")
        self.loss_weights_ = weights
        self.gan_form = gan_form
        self.correctness_sampler, self.photometric_scales = correctness_sampler, int(photometric_scales)
        self.flow_loss_on, self.trains_flow = flow_loss_on, bool(trains_flow)
        self.generator_optimizer = _loss_scaled(generator_optimizer)
        self.discriminator_optimizer = _loss_scaled(discriminator_optimizer) if self.uses_discriminator else None
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in self.loss_names}
        self.build_for_training()

    def build_for_training(self) -> None:
        """Create every variable now (networks, then the optimisers' slots), under the current
        strategy scope: `fit` then traces a step that creates none, so a plain Keras script
        (`compile` + `fit`, with Keras's own callbacks, under any strategy) works, and a restored
        checkpoint fills the optimisers immediately."""
        if not self.generator.built:
            self.generator(self.generator.dummy_inputs(1, 1), training=False)
        if self.discriminator is not None and not self.discriminator.built:
            config = self.generator.config
            self.discriminator(tf.zeros([1, config.image_height, config.image_width, 3]), training=False)
        inner = lambda optimizer: getattr(optimizer, "inner_optimizer", optimizer)  # noqa: E731
        inner(self.generator_optimizer).build(self.generator_variables())
        if self.discriminator_optimizer is not None:
            inner(self.discriminator_optimizer).build(self.discriminator.trainable_variables)

    @property
    def levels(self) -> Tuple[str, ...]:
        """The generator's flow levels, coarse first (e.g. ("h8", "h4"))."""
        return tuple(self.generator.flow_extractor.levels)

    @property
    def uses_discriminator(self) -> bool:
        return self.stage == "full" and self.loss_weights_.adversarial > 0

    @property
    def loss_names(self) -> Tuple[str, ...]:
        """Names of the reported losses: weighted totals first, then unweighted terms."""
        weights = self.loss_weights_
        names = ["generator_loss", "flow_loss"] if self.stage == "full" else ["flow_loss"]
        names += [f"{term}_loss" for term in FLOW_TERMS if getattr(weights, term) > 0]
        if self.stage == "full":
            names += [f"{term}_loss" for term in CONTENT_TERMS if getattr(weights, term) > 0]
            if weights.saturation > 0:
                names.append("saturation_loss")
            if self.uses_discriminator:
                names += ["adversarial_loss", "discriminator_loss"]
        return tuple(names)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def generator_variables(self):
        """The variables the generator update touches.

        Stage "flow": the flow extractor's `flow_variables()` — all of it but the heads L_flow does
        not reach (rf: attention and occlusion; GFLA: the masks), which learn in stage 2.
        Stage "full": every generator variable, without the flow's if compiled with `trains_flow=False`."""
        if self.stage == "flow":
            return self.generator.flow_extractor.flow_variables()
        frozen = set() if getattr(self, "trains_flow", True) else {
            variable.ref() for variable in self.generator.flow_extractor.flow_variables()}
        return [variable for variable in self.generator.trainable_variables if variable.ref() not in frozen]

    def call(self, inputs, training=False):
        """Inference: the generated image `[B, H, W, 3]`."""
        return self.generator(inputs, training=False)

    # ----------------------------------------------------------------------------- losses
    def _vgg_features(self, target, sources, generated=None):
        """VGG features of the targets, the generated images (when given) and the sources.

        Returns (target, generated or None, sources `[B, K, h, w, C]` per layer) feature dicts."""
        weights = self.loss_weights_
        correctness = sorted({losses.CORRECTNESS_LAYERS[level] for level in self.levels}, key=_depth) \
            if weights.correctness > 0 else []
        content = list(losses.PERCEPTUAL_LAYERS) if generated is not None else []
        target_features = generated_features = source_features = None
        if correctness:
            # Targets and sources together as deep as the correctness layers, without a gradient.
            deepest = correctness[-1]
            shared = sorted(set(correctness) | {name for name in content if _depth(name) <= _depth(deepest)},
                            key=_depth)
            sources_folded = fold_sources(sources)
            features = self.vgg.features(tf.concat([tf.cast(target, tf.float32),
                                                    tf.cast(sources_folded, tf.float32)], axis=0), shared)
            target_features, source_features = losses.split_features(
                features, [tf.shape(target)[0], tf.shape(sources_folded)[0]])
            batch_and_sources = tf.shape(sources)[:2]
            source_features = {name: unfold_sources(source_features[name], batch_and_sources)
                               for name in correctness}
            deeper = [name for name in content if _depth(name) > _depth(deepest)]
            if deeper:  # only the targets go on, from the deepest shared activation
                target_features.update(self.vgg.features(None, deeper, start=(deepest, target_features[deepest])))
        elif content:
            target_features = self.vgg.features(tf.cast(target, tf.float32), content)
        if content:  # the only VGG pass the gradient goes through
            generated_features = self.vgg.features(tf.cast(generated, tf.float32), content)
        return target_features, generated_features, source_features

    def flow_losses(self, flows: Mapping[str, tf.Tensor], target_features, source_features,
                    images=None) -> Dict[str, tf.Tensor]:
        """L_flow and its unweighted terms, summed over the generator's flow levels.

        Args:
            flows: per level (`self.levels`, e.g. "h8", "h4") the extractor's flows `[B, K, h, w, 2]`.
            target_features: VGG features of the targets (None when correctness is off).
            source_features: VGG features of the sources, `[B, K, h, w, C]` per layer.
            images: (sources, target) for the photometric term.
        """
        weights = self.loss_weights_
        warp_fn = functools.partial(warp, backend=self.generator.config.warp_backend)
        # The bilinear sampler is the generator's warp; GFLA's Gaussian one is the loss's own.
        sampling = ({"warp_fn": warp_fn} if self.correctness_sampler == "bilinear"
                    else {"sampler": self.correctness_sampler})
        patch_sizes = self.generator.flow_extractor.affine_patch_sizes
        values, total = {}, tf.constant(0.0)
        if weights.correctness > 0:
            values["correctness_loss"] = tf.add_n([
                losses.sampling_correctness_loss(
                    source_features[losses.CORRECTNESS_LAYERS[level]],
                    target_features[losses.CORRECTNESS_LAYERS[level]],
                    flows[level],
                    tile_size=self.correctness_tile,
                    **sampling,
                )
                for level in self.levels
            ])
            total += weights.correctness * values["correctness_loss"]
        if weights.regularization > 0:
            values["regularization_loss"] = tf.add_n([
                losses.affine_regularization_loss(flows[level], patch_sizes[level]) for level in self.levels
            ])
            total += weights.regularization * values["regularization_loss"]
        if weights.photometric > 0:
            values["photometric_loss"] = tf.add_n([losses.photometric_loss(
                *images, flows[level], warp_fn, self.photometric_scales) for level in self.levels])
            total += weights.photometric * values["photometric_loss"]
        values["flow_loss"] = total
        return values

    def generator_losses(self, inputs, target, training: bool = True):
        """Every generator loss of the stage on one batch.

        Returns:
            (the weighted total to minimise, a dict of reported losses, the generated image or
            None in stage "flow").
        """
        weights = self.loss_weights_
        if self.stage == "flow":
            flows = {level: outputs["flow"] for level, outputs in self.generator.extract_flows(inputs).items()}
            generated = None
        else:
            outputs = self.generator(inputs, training=training, return_intermediates=True)
            flows = {level: outputs[level]["flows"] for level in self.levels}
            if self.flow_loss_on == "refined":  # base + residual: what the fusing block warps with
                flows = {level: flow + outputs[level].get("residual_flows", 0.0) for level, flow in flows.items()}
            generated = outputs["image"]

        target_features = generated_features = source_features = None
        if any(getattr(weights, term) > 0 for term in VGG_TERMS):
            content_vgg = weights.perceptual > 0 or weights.style > 0
            target_features, generated_features, source_features = self._vgg_features(
                target, inputs["source_images"], generated if content_vgg else None
            )
        values = self.flow_losses(flows, target_features, source_features, (inputs["source_images"], target))
        total = values["flow_loss"]
        if self.stage == "full":
            if weights.l1 > 0:
                values["l1_loss"] = losses.l1_loss(generated, target)
                total += weights.l1 * values["l1_loss"]
            if weights.saturation > 0:
                if "output_logits" not in outputs:  # (GFLA's generator)
                    raise ValueError(f"LossWeights.saturation needs output_logits, which {self.generator.name} lacks")
                values["saturation_loss"] = losses.saturation_loss(outputs["output_logits"])
                total += weights.saturation * values["saturation_loss"]
            if weights.perceptual > 0:
                values["perceptual_loss"] = losses.perceptual_loss(generated_features, target_features)
                total += weights.perceptual * values["perceptual_loss"]
            if weights.style > 0:
                values["style_loss"] = losses.style_loss(generated_features, target_features)
                total += weights.style * values["style_loss"]
            if self.uses_discriminator:
                fake_logits = self.discriminator(generated, training=False)
                values["adversarial_loss"] = losses.generator_adversarial_loss(fake_logits, self.gan_form)
                total += weights.adversarial * values["adversarial_loss"]
            values["generator_loss"] = total
        return total, values, generated

    def discriminator_loss(self, target, generated, training: bool = True) -> tf.Tensor:
        """The discriminator's adversarial loss on real targets and (gradient-stopped) fakes."""
        real_logits = self.discriminator(target, training=training)
        fake_logits = self.discriminator(tf.stop_gradient(generated), training=training)
        return losses.discriminator_adversarial_loss(real_logits, fake_logits, self.gan_form)

    # ----------------------------------------------------------------------------- steps
    @staticmethod
    def _scale_loss(optimizer, loss):
        """`loss` divided by the replica count (and times the loss scale under float16).

        Call inside the gradient tape, so that the scaling is recorded."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scaled = loss / tf.cast(replicas, loss.dtype)
        if isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
            scaled = optimizer.get_scaled_loss(scaled)
        return scaled

    @staticmethod
    def _apply_gradients(optimizer, tape, scaled_loss, variables):
        gradients = tape.gradient(scaled_loss, variables)
        if isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, variables))

    def train_generator(self, inputs, target):
        """One generator update; returns (reported losses, generated image or None)."""
        if self.generator_optimizer is None:
            raise RuntimeError("TrainingModel: call compile(generator_optimizer=...) before training")
        variables = self.generator_variables()
        with tf.GradientTape() as tape:
            total, values, generated = self.generator_losses(inputs, target, training=True)
            scaled = self._scale_loss(self.generator_optimizer, total)
        self._apply_gradients(self.generator_optimizer, tape, scaled, variables)
        return values, generated

    def train_discriminator(self, target, generated):
        """One discriminator update on the batch's real targets and fakes; returns its loss."""
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.discriminator_loss(target, generated, training=True)
            scaled = self._scale_loss(self.discriminator_optimizer, loss)
        self._apply_gradients(self.discriminator_optimizer, tape, scaled, variables)
        return loss

    def _report(self, values: Mapping[str, tf.Tensor]):
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        inputs, target = split_example(data)
        values, generated = self.train_generator(inputs, target)
        if self.uses_discriminator:
            values["discriminator_loss"] = self.train_discriminator(target, generated)
        return self._report(values)

    def test_step(self, data):
        inputs, target = split_example(data)
        _, values, generated = self.generator_losses(inputs, target, training=False)
        if self.uses_discriminator:
            values["discriminator_loss"] = self.discriminator_loss(target, generated, training=False)
        return self._report(values)


def _depth(name: str) -> Tuple[int, int]:  # order of a VGG19 activation `relu<block>_<conv>`
    return int(name[4]), int(name[6])
