"""One VGG19 feature extractor serving every VGG-based loss of a training step.

The sampling-correctness loss (relu3_1, relu4_1), the perceptual loss (relu1_1 ... relu5_1) and
the style loss (Gram matrices of the same layers) all read the activations of one forward pass
per image: the training step calls `VGGFeatures` once on the target, once on each source and
once on the generated image, and hands the resulting feature dicts to the loss functions.

Layer names follow the papers (`relu{block}_{conv}`); Keras' VGG19 calls the same activations
`block{block}_conv{conv}` (its convolutions carry the ReLU), and either spelling is accepted.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

PERCEPTUAL_LAYERS: Tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Caffe-style ImageNet preprocessing that the Keras VGG19 weights expect: BGR, mean removed.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

_NAME_PATTERN = re.compile(r"^(?:relu(\d)_(\d)|block(\d)_conv(\d))$")


def layer_name(name: str) -> str:
    """The paper name (`relu3_1`) of a VGG19 activation given as `relu3_1` or `block3_conv1`."""
    match = _NAME_PATTERN.match(name)
    if not match:
        raise ValueError(
            f"VGGFeatures: unknown layer {name!r}; expected 'relu<block>_<conv>' or "
            f"'block<block>_conv<conv>' (e.g. 'relu4_1' or 'block4_conv1')"
        )
    block, conv = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    block, conv = int(block), int(conv)
    convs_per_block = (2, 2, 4, 4, 4)
    if not 1 <= block <= 5 or not 1 <= conv <= convs_per_block[block - 1]:
        raise ValueError(f"VGGFeatures: VGG19 has no layer {name!r}")
    return f"relu{block}_{conv}"


def layer_stride(name: str) -> int:
    """Downsampling factor of a VGG19 activation: relu1_x 1, relu2_x 2, relu3_x 4, relu4_x 8, relu5_x 16."""
    return 2 ** (int(layer_name(name)[4]) - 1)


def split_features(features: Dict[str, tf.Tensor], sizes: Sequence) -> List[Dict[str, tf.Tensor]]:
    """Split the feature dict of a concatenated batch back into one dict per part.

    Lets a training step run VGG once on `concat([target, generated, sources])` and hand each
    loss its part: `target, generated, sources = split_features(vgg(batch), [B, B, B * K])`.
    """
    parts = {name: tf.split(value, list(sizes), axis=0) for name, value in features.items()}
    return [{name: parts[name][index] for name in features} for index in range(len(sizes))]


def _keras_name(name: str) -> str:
    block, conv = layer_name(name)[4:].split("_")
    return f"block{block}_conv{conv}"


class VGGFeatures(tf.keras.layers.Layer):
    """Frozen VGG19 activations of images in [-1, 1], as a dict keyed by layer name.

    Args:
        layers: activations to return, paper (`relu4_1`) or Keras (`block4_conv1`) names.
            Defaults to relu1_1 ... relu5_1, which every loss of the paper reads.
        weights: "imagenet" (Keras' loader and cache; may download on first use), a path to a
            local weights file for `VGG19(include_top=False)` (.h5), or None (random, for tests).

    Call: `images [B, H, W, 3]` in [-1, 1] -> `{name: [B, H/s, W/s, C]}` float32, with s the
    layer's stride (`layer_stride`). The ImageNet preprocessing happens inside.
    """

    def __init__(self, layers: Sequence[str] = PERCEPTUAL_LAYERS, weights: Optional[str] = "imagenet", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(layers, str):
            layers = (layers,)
        if not layers:
            raise ValueError("VGGFeatures: `layers` must name at least one VGG19 activation")
        self.layer_names = tuple(layer_name(name) for name in layers)
        if weights is not None and weights != "imagenet" and not os.path.isfile(weights):
            raise ValueError(f"VGGFeatures: weights must be 'imagenet', None or an existing file; got {weights!r}")
        self.weights_source = weights
        backbone = tf.keras.applications.VGG19(include_top=False, weights=weights, input_shape=(None, None, 3))
        outputs = {name: backbone.get_layer(_keras_name(name)).output for name in self.layer_names}
        self.backbone = tf.keras.Model(backbone.input, outputs, name="vgg19_features")
        self.backbone.trainable = False

    @staticmethod
    def preprocess(images: tf.Tensor) -> tf.Tensor:
        """Map RGB images in [-1, 1] to the Caffe-style input of Keras' VGG19 (BGR, mean removed)."""
        images = tf.cast(images, tf.float32)
        pixels = (images + 1.0) * 127.5
        return pixels[..., ::-1] - tf.constant(_IMAGENET_BGR_MEAN, tf.float32)

    def call(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """images [B, H, W, 3] in [-1, 1] -> {layer name: float32 [B, H/s, W/s, C]}."""
        if images.shape.rank is not None and (images.shape.rank != 4 or images.shape[-1] not in (None, 3)):
            raise ValueError(f"VGGFeatures: images must be [B, H, W, 3] in [-1, 1], got shape {images.shape}")
        features = self.backbone(self.preprocess(images), training=False)
        return {name: tf.cast(features[name], tf.float32) for name in self.layer_names}

    def get_config(self):
        config = super().get_config()
        config.update({"layers": list(self.layer_names), "weights": self.weights_source})
        return config
