"""Inception v3 pool features for FID, in the two variants the field uses (see METRICS.md).

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

MODES = ("standard", "gfla")
INPUT_SIZE = 299
MINIMUM_SIZE = 75  # the smallest input whose Mixed_7c map is still 1x1
FEATURE_DIMENSION = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_EPSILON = 1e-3
POOLS = ("average", "average_exclude_padding", "max")
# Keys of the official checkpoints that the feature network does not use.
IGNORED_PREFIXES = ("fc.", "AuxLogits.")
IGNORED_SUFFIXES = (".num_batches_tracked",)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


class BasicConv2D(tf.keras.layers.Layer):
    """torchvision's BasicConv2d: zero padding, 'valid' conv without bias, BatchNorm(eps 1e-3), ReLU.

    Args:
        filters: output channels.
        kernel_size: int or (kh, kw).
        strides: int.
        padding: int or (ph, pw), PyTorch's symmetric padding.
    Call: `[B, H, W, C_in]` → `[B, H', W', filters]` (always inference-mode BatchNorm).
    """

    def __init__(self, filters: int, kernel_size=1, strides: int = 1, padding=0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = _pair(kernel_size)
        self.strides = strides
        self.padding = _pair(padding)
        self.pad = tf.keras.layers.ZeroPadding2D(self.padding) if any(self.padding) else None
        self.conv = tf.keras.layers.Conv2D(filters, self.kernel_size, strides=strides, padding="valid",
                                           use_bias=False, name="conv")
        self.bn = tf.keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="bn")

    def call(self, inputs):
        x = self.pad(inputs) if self.pad is not None else inputs
        return tf.nn.relu(self.bn(self.conv(x), training=False))

    def torch_plan(self, prefix: str) -> Dict[str, Tuple[tf.Variable, torch_weights.Transform]]:
        """`{torch key: (variable, transform)}` for `prefix.conv.weight` and `prefix.bn.*`."""
        return {
            f"{prefix}.conv.weight": (self.conv.kernel, torch_weights.conv_kernel),
            f"{prefix}.bn.weight": (self.bn.gamma, torch_weights.identity),
            f"{prefix}.bn.bias": (self.bn.beta, torch_weights.identity),
            f"{prefix}.bn.running_mean": (self.bn.moving_mean, torch_weights.identity),
            f"{prefix}.bn.running_var": (self.bn.moving_variance, torch_weights.identity),
        }

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding)
        return config


def pool_3x3(inputs: tf.Tensor, pool: str) -> tf.Tensor:
    """The 3x3, stride 1, padding 1 pool of an Inception pool branch.

    "average": torchvision's `avg_pool2d(count_include_pad=True)` (zeros enter the mean);
    "average_exclude_padding": pytorch-fid's `count_include_pad=False` = TensorFlow 'SAME';
    "max": pytorch-fid's Mixed_7c `max_pool2d(padding=1)` (padding never wins) = 'SAME'.
    """
    if pool == "average":
        padded = tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
        return tf.nn.avg_pool2d(padded, 3, 1, "VALID")
    if pool == "average_exclude_padding":
        return tf.nn.avg_pool2d(inputs, 3, 1, "SAME")
    if pool == "max":
        return tf.nn.max_pool2d(inputs, 3, 1, "SAME")
    raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")


class InceptionBlock(tf.keras.layers.Layer):
    """Base of the mixed blocks: named BasicConv2D branches, concatenated on channels."""

    def __init__(self, pool: str = "average", **kwargs):
        super().__init__(**kwargs)
        if pool not in POOLS:
            raise ValueError(f"{type(self).__name__}: unknown pool {pool!r}; expected one of {POOLS}")
        self.pool = pool
        self.convs: Dict[str, BasicConv2D] = {}

    def _conv(self, name: str, *args, **kwargs) -> BasicConv2D:
        layer = BasicConv2D(*args, name=name, **kwargs)
        self.convs[name] = layer
        setattr(self, name, layer)
        return layer

    def torch_plan(self, prefix: str):
        plan = {}
        for name, layer in self.convs.items():
            plan.update(layer.torch_plan(f"{prefix}.{name}"))
        return plan

    def get_config(self):
        config = super().get_config()
        config["pool"] = self.pool
        return config


class InceptionA(InceptionBlock):
    """Mixed_5b/5c/5d (35x35): 1x1 | 1x1→5x5 | 1x1→3x3→3x3 | pool→1x1 (`pool_features`)."""

    def __init__(self, pool_features: int, pool: str = "average", **kwargs):
        super().__init__(pool, **kwargs)
        self.pool_features = pool_features
        self._conv("branch1x1", 64, 1)
        self._conv("branch5x5_1", 48, 1)
        self._conv("branch5x5_2", 64, 5, padding=2)
        self._conv("branch3x3dbl_1", 64, 1)
        self._conv("branch3x3dbl_2", 96, 3, padding=1)
        self._conv("branch3x3dbl_3", 96, 3, padding=1)
        self._conv("branch_pool", pool_features, 1)

    def call(self, x):
        """`[B, H, W, C]` → `[B, H, W, 224 + pool_features]`."""
        return tf.concat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(pool_3x3(x, self.pool)),
        ], axis=-1)

    def get_config(self):
        config = super().get_config()
        config["pool_features"] = self.pool_features
        return config


class InceptionB(InceptionBlock):
    """Mixed_6a (35→17): 3x3 s2 | 1x1→3x3→3x3 s2 | max pool 3 s2."""

    def __init__(self, **kwargs):
        super().__init__("average", **kwargs)
        self._conv("branch3x3", 384, 3, strides=2)
        self._conv("branch3x3dbl_1", 64, 1)
        self._conv("branch3x3dbl_2", 96, 3, padding=1)
        self._conv("branch3x3dbl_3", 96, 3, strides=2)

    def call(self, x):
        """`[B, H, W, C]` → `[B, (H-3)//2+1, (W-3)//2+1, 480 + C]`."""
        return tf.concat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            tf.nn.max_pool2d(x, 3, 2, "VALID"),
        ], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.pop("pool")
        return config


class InceptionC(InceptionBlock):
    """Mixed_6b-6e (17x17): factorised 7x7 branches with `channels_7x7` inner channels."""

    def __init__(self, channels_7x7: int, pool: str = "average", **kwargs):
        super().__init__(pool, **kwargs)
        self.channels_7x7 = c7 = channels_7x7
        self._conv("branch1x1", 192, 1)
        self._conv("branch7x7_1", c7, 1)
        self._conv("branch7x7_2", c7, (1, 7), padding=(0, 3))
        self._conv("branch7x7_3", 192, (7, 1), padding=(3, 0))
        self._conv("branch7x7dbl_1", c7, 1)
        self._conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))
        self._conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))
        self._conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))
        self._conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))
        self._conv("branch_pool", 192, 1)

    def call(self, x):
        """`[B, H, W, C]` → `[B, H, W, 768]`."""
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return tf.concat([self.branch1x1(x), seven, double, self.branch_pool(pool_3x3(x, self.pool))], axis=-1)

    def get_config(self):
        config = super().get_config()
        config["channels_7x7"] = self.channels_7x7
        return config


class InceptionD(InceptionBlock):
    """Mixed_7a (17→8): 1x1→3x3 s2 | 1x1→1x7→7x1→3x3 s2 | max pool 3 s2."""

    def __init__(self, **kwargs):
        super().__init__("average", **kwargs)
        self._conv("branch3x3_1", 192, 1)
        self._conv("branch3x3_2", 320, 3, strides=2)
        self._conv("branch7x7x3_1", 192, 1)
        self._conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))
        self._conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))
        self._conv("branch7x7x3_4", 192, 3, strides=2)

    def call(self, x):
        """`[B, H, W, C]` → `[B, (H-3)//2+1, (W-3)//2+1, 512 + C]`."""
        branch7x7x3 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        return tf.concat([self.branch3x3_2(self.branch3x3_1(x)), branch7x7x3,
                          tf.nn.max_pool2d(x, 3, 2, "VALID")], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.pop("pool")
        return config


class InceptionE(InceptionBlock):
    """Mixed_7b/7c (8x8): 1x1 | 1x1→(1x3, 3x1) | 1x1→3x3→(1x3, 3x1) | pool→1x1."""

    def __init__(self, pool: str = "average", **kwargs):
        super().__init__(pool, **kwargs)
        self._conv("branch1x1", 320, 1)
        self._conv("branch3x3_1", 384, 1)
        self._conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))
        self._conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))
        self._conv("branch3x3dbl_1", 448, 1)
        self._conv("branch3x3dbl_2", 384, 3, padding=1)
        self._conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))
        self._conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))
        self._conv("branch_pool", 192, 1)

    def call(self, x):
        """`[B, H, W, C]` → `[B, H, W, 2048]`."""
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return tf.concat([
            self.branch1x1(x),
            self.branch3x3_2a(three), self.branch3x3_2b(three),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pool_3x3(x, self.pool)),
        ], axis=-1)


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
