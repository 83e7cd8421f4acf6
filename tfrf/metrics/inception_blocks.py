"""The building blocks of Inception v3 (Szegedy et al., CVPR 2016, "Rethinking the Inception
architecture"), laid out as torchvision's `inception.py` so that its state-dict keys map one to one.

`BasicConv2D` is torchvision's BasicConv2d (convolution without bias, BatchNorm with eps 0.001,
ReLU) with PyTorch padding: explicit zero padding before a 'valid' convolution. The mixed blocks
keep torchvision's attribute names (`branch1x1`, `branch7x7dbl_3`, ...) for their convolutions;
`torch_plan(prefix)` lists `{torch key: (variable, transform)}` for a loader. The pool branch of
InceptionA/C/E is configurable, which is where pytorch-fid's FID network differs (see
`pool_3x3`).
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from tfrf.metrics import torch_weights

BATCH_NORM_EPSILON = 1e-3
POOLS = ("average", "average_exclude_padding", "max")


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
    """Base of the mixed blocks: named BasicConv2D branches, concatenated on channels.

    `config_fields` names the constructor arguments that `get_config` records (none for the
    blocks whose pool is fixed).
    """

    config_fields: Tuple[str, ...] = ("pool",)

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
        config.update({name: getattr(self, name) for name in self.config_fields})
        return config


class InceptionA(InceptionBlock):
    """Mixed_5b/5c/5d (35x35): 1x1 | 1x1→5x5 | 1x1→3x3→3x3 | pool→1x1 (`pool_features`)."""

    config_fields = ("pool", "pool_features")

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


class InceptionB(InceptionBlock):
    """Mixed_6a (35→17): 3x3 s2 | 1x1→3x3→3x3 s2 | max pool 3 s2."""

    config_fields = ()

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


class InceptionC(InceptionBlock):
    """Mixed_6b-6e (17x17): factorised 7x7 branches with `channels_7x7` inner channels."""

    config_fields = ("pool", "channels_7x7")

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


class InceptionD(InceptionBlock):
    """Mixed_7a (17→8): 1x1→3x3 s2 | 1x1→1x7→7x1→3x3 s2 | max pool 3 s2."""

    config_fields = ()

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
