"""Inception v3 pool features for FID, in the two variants the field uses.

- `mode="standard"` — TTUR / pytorch-fid (mseitzer/pytorch-fid `inception.py`): the 2015-12-05
  TensorFlow graph ported to PyTorch (`pt_inception-2015-12-05-6726825d.pth`). Its blocks differ
  from torchvision's: the 3x3 average pools of Mixed_5b/5c/5d (InceptionA), Mixed_6b-6e
  (InceptionC) and Mixed_7b (InceptionE_1) exclude the padding from the mean
  (`count_include_pad=False`, TensorFlow's 'SAME' average pool), and Mixed_7c (InceptionE_2) takes
  a 3x3 max pool in its pool branch. Input: uint8 / 255, resized bilinearly (half-pixel centres,
  no antialiasing) to 299x299, then `2x - 1`.
- `mode="gfla"` — GFLA's `script/inception.py`: torchvision's ImageNet Inception v3
  (`inception_v3_google-0cc3c7bd.pth`), plain blocks (average pools count the padding, Mixed_7c
  averages). Input: uint8 / 255 resized the same way, then per channel
  `x * (std / 0.5) + (mean - 0.5) / 0.5` with the ImageNet mean and std.

Both return the 2048-d global average pool after Mixed_7c. Every convolution is torchvision's
`BasicConv2d`: convolution without bias, BatchNorm (eps 0.001), ReLU; PyTorch padding is explicit
zero padding before a 'valid' convolution.
"""
from __future__ import annotations

import hashlib
import os
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from tfrf.metrics import cache, torch_weights
from tfrf.metrics.inception_blocks import (BasicConv2D, InceptionA, InceptionB, InceptionC, InceptionD,
                                           InceptionE)

MODES = ("standard", "gfla")
INPUT_SIZE = 299
MINIMUM_SIZE = 75  # the smallest input whose Mixed_7c map is still 1x1
FEATURE_DIMENSION = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keys of the official checkpoints that the feature network does not use.
IGNORED_PREFIXES = ("fc.", "AuxLogits.")
IGNORED_SUFFIXES = (".num_batches_tracked",)


def _stages(mode: str):
    """(torch name, layer) of the feature network in order."""
    fid = mode == "standard"
    average = "average_exclude_padding" if fid else "average"
    return [
        ("Conv2d_1a_3x3", BasicConv2D(32, 3, strides=2, name="Conv2d_1a_3x3")),
        ("Conv2d_2a_3x3", BasicConv2D(32, 3, name="Conv2d_2a_3x3")),
        ("Conv2d_2b_3x3", BasicConv2D(64, 3, padding=1, name="Conv2d_2b_3x3")),
        ("maxpool1", tf.keras.layers.MaxPooling2D(3, 2, "valid", name="maxpool1")),
        ("Conv2d_3b_1x1", BasicConv2D(80, 1, name="Conv2d_3b_1x1")),
        ("Conv2d_4a_3x3", BasicConv2D(192, 3, name="Conv2d_4a_3x3")),
        ("maxpool2", tf.keras.layers.MaxPooling2D(3, 2, "valid", name="maxpool2")),
        ("Mixed_5b", InceptionA(32, average, name="Mixed_5b")),
        ("Mixed_5c", InceptionA(64, average, name="Mixed_5c")),
        ("Mixed_5d", InceptionA(64, average, name="Mixed_5d")),
        ("Mixed_6a", InceptionB(name="Mixed_6a")),
        ("Mixed_6b", InceptionC(128, average, name="Mixed_6b")),
        ("Mixed_6c", InceptionC(160, average, name="Mixed_6c")),
        ("Mixed_6d", InceptionC(160, average, name="Mixed_6d")),
        ("Mixed_6e", InceptionC(192, average, name="Mixed_6e")),
        ("Mixed_7a", InceptionD(name="Mixed_7a")),
        ("Mixed_7b", InceptionE(average, name="Mixed_7b")),
        ("Mixed_7c", InceptionE("max" if fid else "average", name="Mixed_7c")),
    ]


class FIDInception(tf.keras.Model):
    """Inception v3 2048-d pool features, `mode="standard"` (pytorch-fid) or `"gfla"` (GFLA).

    Args:
        mode: "standard" or "gfla" (see the module docstring; they give different FIDs).
        weights: None (random initialisation, for tests), a `.weights.h5` written by
            `save_weights` or the cache, or a state source for `load_torch_weights`.
        cache_dir: where `load_torch_weights` caches converted weights (`tfrf.metrics.cache`).
        input_size: the side images are resized to. 299 defines FID; smaller values (>= 75) run
            the same network faster and serve tests only.

    `features(uint8 [N, H, W, 3])` → float32 `[N, 2048]`; `call(x)` runs the network alone on
    already preprocessed float `[N, h, w, 3]` (h, w >= 75).
    """

    def __init__(self, mode: str = "standard", weights=None, cache_dir: cache.CacheDir = None,
                 input_size: int = INPUT_SIZE, **kwargs):
        if mode not in MODES:
            raise ValueError(f"FIDInception: unknown mode {mode!r}; expected one of {MODES}")
        if input_size < MINIMUM_SIZE:
            raise ValueError(f"FIDInception: input_size must be >= {MINIMUM_SIZE}, got {input_size}")
        kwargs.setdefault("name", f"fid_inception_{mode}")
        super().__init__(**kwargs)
        self.mode = mode
        self.cache_dir = cache_dir
        self.input_size = input_size
        stages = _stages(mode)
        self.stage_names = tuple(name for name, _ in stages)
        self.stages = [layer for _, layer in stages]
        self.network(tf.zeros([1, MINIMUM_SIZE, MINIMUM_SIZE, 3]))  # creates every variable (eagerly: fast)
        self.built = True
        self._features_function = None
        self._fingerprint = None
        if weights is not None:
            self.load(weights)

    # --- weights -------------------------------------------------------------------------------
    def load(self, weights) -> None:
        """Load a `.weights.h5` path, or a state source (`.pth`/`.npz` path, mapping)."""
        if torch_weights.is_path(weights) and os.fspath(weights).endswith(".h5"):
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"FIDInception: weights file {os.fspath(weights)} does not exist")
            self.load_weights(os.fspath(weights))
            self._fingerprint = None
        else:
            self.load_torch_weights(weights)

    def torch_plan(self) -> Dict[str, Tuple[tf.Variable, torch_weights.Transform]]:
        """`{torch key: (variable, transform)}` of every parameter and BatchNorm buffer."""
        plan = {}
        for name, layer in zip(self.stage_names, self.stages):
            if hasattr(layer, "torch_plan"):
                plan.update(layer.torch_plan(name))
        return plan

    def load_torch_weights(self, state: torch_weights.StateSource, cache_dir: cache.CacheDir = None) -> bool:
        """Load pytorch-fid's (`standard`) or torchvision's (`gfla`) Inception v3 state dict.

        Args:
            state: `.pth`/`.npz` path or mapping with `Conv2d_1a_3x3.conv.weight`,
                `Mixed_5b.branch1x1.bn.running_mean`, ...; the classifier (`fc.*`), the auxiliary
                head (`AuxLogits.*`) and `*.num_batches_tracked` are ignored.
            cache_dir: overrides the model's `cache_dir`; a file source's conversion is cached
                under a key of its content and mode.
        Returns:
            True when the weights came from the cache.
        Raises:
            ValueError: naming missing or unused keys or shape mismatches.
        """
        directory = cache.resolve_cache_dir(self.cache_dir if cache_dir is None else cache_dir)
        name = None
        if directory and torch_weights.is_path(state):
            name = f"inception-{self.mode}-{cache.content_key('inception', self.mode, torch_weights.fingerprint(state))}.weights.h5"
        else:
            directory = None

        def convert():
            what = f"FIDInception ({self.mode})"
            torch_weights.assign_state(torch_weights.read_state_dict(state, what), self.torch_plan(), what,
                                       ignored_prefixes=IGNORED_PREFIXES, ignored_suffixes=IGNORED_SUFFIXES)

        hit = cache.load_or_convert(self, directory, name, convert)
        self._fingerprint = None
        return hit

    def fingerprint(self) -> str:
        """sha256 of the mode, the input size and every weight value: the identity of these features."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{self.mode}|{self.input_size}".encode())
            for variable in self.weights:
                digest.update(variable.numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    # --- forward -------------------------------------------------------------------------------
    def preprocess(self, images) -> tf.Tensor:
        """uint8 `[N, H, W, 3]` → float32 `[N, 299, 299, 3]` (`input_size`) as the mode defines."""
        images = tf.convert_to_tensor(images)
        x = tf.cast(images, tf.float32) / 255.0
        size = self.input_size
        if images.shape[1] != size or images.shape[2] != size:
            x = tf.image.resize(x, (size, size), method="bilinear", antialias=False)
        if self.mode == "standard":
            return 2.0 * x - 1.0
        std = tf.constant(IMAGENET_STD, tf.float32)
        mean = tf.constant(IMAGENET_MEAN, tf.float32)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def network(self, inputs) -> tf.Tensor:
        """Preprocessed float `[N, h, w, 3]` (h, w >= 75) → pool features `[N, 2048]`."""
        x = inputs
        for layer in self.stages:
            x = layer(x)
        return tf.reduce_mean(x, axis=[1, 2])

    def call(self, inputs, training=None):
        """Preprocessed float `[N, h, w, 3]` → `[N, 2048]`."""
        return self.network(tf.convert_to_tensor(inputs, tf.float32))

    def features(self, images, batch_size: int = 64) -> np.ndarray:
        """Pool features of uint8 `[N, H, W, 3]` images (any size, resized inside): float32
        `[N, 2048]`, computed in batches of `batch_size`."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"FIDInception.features: images must be uint8 [N, H, W, 3], got "
                             f"{images.dtype} {images.shape}")
        if self._features_function is None:
            self._features_function = tf.function(
                lambda batch: self.network(self.preprocess(batch)),
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        if not len(images):
            return np.zeros([0, FEATURE_DIMENSION], np.float32)
        return np.concatenate([self._features_function(images[start:start + batch_size]).numpy()
                               for start in range(0, len(images), batch_size)])

    def get_config(self):
        return {"mode": self.mode, "input_size": self.input_size, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
