"""LPIPS, the learned perceptual image patch similarity (Zhang et al., CVPR 2018), version 0.1.

`d(x0, x1) = sum_l mean_{h,w} w_l . (n(f_l(x0)) - n(f_l(x1)))^2` with `f_l` five ReLU taps of an
ImageNet backbone (torchvision AlexNet `features` or VGG16) applied after the scaling layer
`(x - shift) / scale`, `n` unit normalisation over channels `f / (sqrt(sum_c f^2) + 1e-10)` and
`w_l >= 0` the learned 1x1 "lin" weights (no bias). Inputs are RGB in [-1, 1]. This is the
`lpips` package (richzhang/PerceptualSimilarity) with `net="alex"|"vgg"`, `version="0.1"`,
`spatial=False`; GFLA and the residual-flow paper report it with AlexNet.

PyTorch's padding is reproduced exactly: explicit zero padding then a 'valid' convolution, and
max pools without padding, rounding the output size down (`ceil_mode=False`).

Weights: `LPIPS.load_torch_weights(backbone, lin)` with torchvision's `features.{i}.weight|bias`
(`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`; their `classifier.*` keys are ignored) and
the `lpips` package's `lin{k}.model.1.weight` of shape (1, C, 1, 1) (`weights/v0.1/alex.pth`).
Without weights the network is randomly initialised (lin weights non-negative), for tests.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from tfrf.metrics import cache, torch_weights

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPSILON = 1e-10
NETS = ("alex", "vgg")

# Backbone layers in torchvision `features` order: ("conv", index, filters, kernel, stride, padding),
# ("relu", tap) with tap True where LPIPS reads the activation, ("pool", kernel, stride).
_ALEX = (
    ("conv", 0, 64, 11, 4, 2), ("relu", True), ("pool", 3, 2),
    ("conv", 3, 192, 5, 1, 2), ("relu", True), ("pool", 3, 2),
    ("conv", 6, 384, 3, 1, 1), ("relu", True),
    ("conv", 8, 256, 3, 1, 1), ("relu", True),
    ("conv", 10, 256, 3, 1, 1), ("relu", True),
)


def _vgg16_layers():
    layers, index = [], 0
    for block, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if block:
            layers.append(("pool", 2, 2))
            index += 1
        for conv in range(convs):
            layers += [("conv", index, filters, 3, 1, 1), ("relu", conv == convs - 1)]
            index += 2
    return tuple(layers)


BACKBONES = {"alex": _ALEX, "vgg": _vgg16_layers()}
TAP_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def _minimum_size(net: str) -> int:
    """Smallest image side the backbone accepts (every tap at least 1x1)."""
    size = 1
    while True:
        current = size
        for layer in BACKBONES[net]:
            if layer[0] == "conv":
                current = (current + 2 * layer[5] - layer[3]) // layer[4] + 1
            elif layer[0] == "pool":
                current = (current - layer[1]) // layer[2] + 1
            current = current if current >= 1 else -(1 << 30)
        if current >= 1:
            return size
        size += 1


MINIMUM_SIZE = {net: _minimum_size(net) for net in NETS}  # alex 31, vgg 16


def normalize_channels(features: tf.Tensor) -> tf.Tensor:
    """`f / (sqrt(sum_c f^2) + 1e-10)` over the last axis (the `lpips` package's normalize_tensor)."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(features), axis=-1, keepdims=True))
    return features / (norm + EPSILON)


def _build_backbone(net: str) -> tf.keras.Model:
    inputs = tf.keras.Input((None, None, 3), name="scaled_images")
    x, taps = inputs, []
    for layer in BACKBONES[net]:
        if layer[0] == "conv":
            _, index, filters, kernel, stride, padding = layer
            if padding:
                x = tf.keras.layers.ZeroPadding2D(padding, name=f"features_{index}_padding")(x)
            x = tf.keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", name=f"features_{index}")(x)
        elif layer[0] == "relu":
            x = tf.keras.layers.ReLU()(x)
            if layer[1]:
                taps.append(x)
        else:
            x = tf.keras.layers.MaxPooling2D(layer[1], strides=layer[2], padding="valid")(x)
    return tf.keras.Model(inputs, taps, name=f"{net}_features")


class LPIPS(tf.keras.Model):
    """LPIPS v0.1 distance between two image batches.

    Args:
        net: "alex" (the figure the field reports) or "vgg".
        weights: None (random initialisation), a `.weights.h5` written by `save_weights` or the
            cache, or a pair `(backbone, lin)` of state sources for `load_torch_weights`.
        cache_dir: where `load_torch_weights` caches converted weights (see `tfrf.metrics.cache`).

    Call: `lpips(images, other_images)` with two float batches `[B, H, W, 3]` in [-1, 1]
    (H, W >= 31 for AlexNet, 16 for VGG) → float32 `[B]` distances.
    """

    def __init__(self, net: str = "alex", weights=None, cache_dir: cache.CacheDir = None, **kwargs):
        if net not in NETS:
            raise ValueError(f"LPIPS: unknown net {net!r}; expected one of {NETS}")
        kwargs.setdefault("name", f"lpips_{net}")
        super().__init__(**kwargs)
        self.net = net
        self.cache_dir = cache_dir
        self.backbone = _build_backbone(net)
        self.lins = []
        for tap, channels in enumerate(TAP_CHANNELS[net]):
            lin = tf.keras.layers.Conv2D(1, 1, use_bias=False, name=f"lin{tap}",
                                         kernel_initializer=tf.keras.initializers.RandomUniform(0.0, 2.0 / channels))
            lin.build((None, None, None, channels))
            self.lins.append(lin)
        self._shift = tf.constant(SHIFT, tf.float32)
        self._scale = tf.constant(SCALE, tf.float32)
        self._batched = None
        if weights is not None:
            self.load(weights)

    # --- weights -------------------------------------------------------------------------------
    def load(self, weights) -> None:
        """Load a `.weights.h5` path, or a `(backbone, lin)` pair of state sources."""
        if isinstance(weights, (tuple, list)) and len(weights) == 2:
            self.load_torch_weights(*weights)
        elif torch_weights.is_path(weights) and os.fspath(weights).endswith(".h5"):
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"LPIPS: weights file {os.fspath(weights)} does not exist")
            self.load_weights(os.fspath(weights))
        else:
            raise ValueError("LPIPS: weights must be a .weights.h5 path or a (backbone, lin) pair of "
                             f".pth/.npz paths or state dicts, got {weights!r}")

    def _plan(self) -> Dict[str, Tuple[tf.Variable, torch_weights.Transform]]:
        plan = {}
        for layer in BACKBONES[self.net]:
            if layer[0] == "conv":
                conv = self.backbone.get_layer(f"features_{layer[1]}")
                plan[f"features.{layer[1]}.weight"] = (conv.kernel, torch_weights.conv_kernel)
                plan[f"features.{layer[1]}.bias"] = (conv.bias, torch_weights.identity)
        return plan

    def load_torch_weights(self, backbone: torch_weights.StateSource, lin: torch_weights.StateSource,
                           cache_dir: cache.CacheDir = None) -> bool:
        """Load torchvision backbone weights and the `lpips` package's lin weights.

        Args:
            backbone: `.pth`/`.npz` path or mapping with `features.{i}.weight|bias` (torchvision
                layout (out, in, kh, kw)); `classifier.*` keys are ignored.
            lin: `.pth`/`.npz` path or mapping with `lin{k}.model.1.weight`, shape (1, C_k, 1, 1).
            cache_dir: overrides the model's `cache_dir`. When both sources are files, the
                converted weights are cached under a key of their content and the next load
                reads the cache instead of the `.pth` files.
        Returns:
            True when the weights came from the cache.
        Raises:
            ValueError: naming missing or unused keys, or shape mismatches.
        """
        directory = cache.resolve_cache_dir(self.cache_dir if cache_dir is None else cache_dir)
        if not (torch_weights.is_path(backbone) and torch_weights.is_path(lin)):
            directory = None  # in-memory state dicts convert in milliseconds
        name = None
        if directory:
            key = cache.content_key("lpips", self.net, "0.1", torch_weights.fingerprint(backbone),
                                    torch_weights.fingerprint(lin))
            name = f"lpips-{self.net}-{key}.weights.h5"

        def convert():
            backbone_state = torch_weights.read_state_dict(backbone, f"LPIPS {self.net} backbone")
            lin_state = torch_weights.read_state_dict(lin, f"LPIPS {self.net} lin")
            lin_plan = {f"lin{tap}.model.1.weight": (layer.kernel, torch_weights.conv_kernel)
                        for tap, layer in enumerate(self.lins)}
            assignments = torch_weights.prepare_assignments(
                backbone_state, self._plan(), f"LPIPS {self.net} backbone", ignored_prefixes=("classifier.",))
            assignments += torch_weights.prepare_assignments(lin_state, lin_plan, f"LPIPS {self.net} lin")
            torch_weights.apply_assignments(assignments)  # both checked before either is assigned

        return cache.load_or_convert(self, directory, name, convert)

    # --- forward -------------------------------------------------------------------------------
    def _check(self, images, other_images) -> Tuple[tf.Tensor, tf.Tensor]:
        images = tf.cast(tf.convert_to_tensor(images), tf.float32)
        other_images = tf.cast(tf.convert_to_tensor(other_images), tf.float32)
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"LPIPS: images must be [B, H, W, 3] in [-1, 1], got shape {images.shape}")
        if images.shape != other_images.shape:
            raise ValueError(f"LPIPS: the two image batches must have one shape, got {images.shape} "
                             f"and {other_images.shape}")
        smallest = MINIMUM_SIZE[self.net]
        for side in images.shape[1:3]:
            if side is not None and side < smallest:
                raise ValueError(f"LPIPS ({self.net}): images [B, H, W, 3] need H and W >= {smallest}, "
                                 f"got shape {images.shape}")
        return images, other_images

    def features(self, images) -> List[tf.Tensor]:
        """The five taps `[B, h_l, w_l, C_l]` of images `[B, H, W, 3]` in [-1, 1] (after scaling)."""
        images = tf.cast(tf.convert_to_tensor(images), tf.float32)
        return list(self.backbone((images - self._shift) / self._scale, training=False))

    def per_tap_distances(self, images, other_images) -> tf.Tensor:
        """Each tap's term `mean_{h,w} lin_l((n(f_l(x0)) - n(f_l(x1)))^2)`: float32 `[B, 5]`."""
        images, other_images = self._check(images, other_images)
        batch = tf.shape(images)[0]
        taps = self.features(tf.concat([images, other_images], axis=0))
        terms = []
        for lin, tap in zip(self.lins, taps):
            normalized = normalize_channels(tap)
            difference = tf.square(normalized[:batch] - normalized[batch:])
            terms.append(tf.reduce_mean(lin(difference), axis=[1, 2, 3]))
        return tf.stack(terms, axis=-1)

    def call(self, images, other_images=None, training=None):
        """`[B]` LPIPS distances between `images` and `other_images` (`[B, H, W, 3]`, [-1, 1])."""
        if other_images is None:
            if isinstance(images, (tuple, list)) and len(images) == 2:
                images, other_images = images
            else:
                raise ValueError("LPIPS: call it on two image batches, lpips(images, other_images)")
        return tf.reduce_sum(self.per_tap_distances(images, other_images), axis=-1)

    def distances(self, images, other_images, batch_size: int = 64) -> np.ndarray:
        """`call` over numpy batches of at most `batch_size`, through one traced function:
        float64 `[N]` (GFLA evaluates in batches of 64; the value does not depend on it)."""
        images, other_images = np.asarray(images, np.float32), np.asarray(other_images, np.float32)
        self._check(images[:1], other_images[:1])
        if images.shape != other_images.shape:
            raise ValueError(f"LPIPS: the two image batches must have one shape, got {images.shape} "
                             f"and {other_images.shape}")
        if self._batched is None:
            self._batched = tf.function(lambda a, b: self.call(a, b), reduce_retracing=True)
        values = [self._batched(images[start:start + batch_size], other_images[start:start + batch_size]).numpy()
                  for start in range(0, len(images), batch_size)]
        return np.concatenate(values).astype(np.float64) if values else np.zeros([0])

    def get_config(self):
        return {"net": self.net, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

