"""Spectral normalisation as PyTorch computes it (`torch.nn.utils.spectral_norm`).

Miyato et al., *Spectral Normalization for Generative Adversarial Networks* (ICLR 2018); GFLA's
discriminator (Ren et al. CVPR 2020) wraps every convolution in PyTorch's implementation, whose
semantics this wrapper reproduces so that converted checkpoints (`weight_orig`, `weight_u`,
`weight_v`) behave the same:

- the wrapped layer's kernel is `weight_orig`, the trainable parameter; it is never overwritten;
- `u` [out] and `v` [in * kh * kw] are non-trainable unit vectors of the kernel as a matrix
  `W` [out, in * kh * kw], flattened in PyTorch's (out, in, kh, kw) order (a TF kernel
  (kh, kw, in, out) is permuted first; a transposed conv's (kh, kw, out, in) likewise); they
  start as random unit vectors advanced by one power iteration on the initial kernel;
- in training, every forward pass does one power-iteration step
  `v = normalize(Wᵀu)`, `u = normalize(Wv)`, stores u and v, and holds them constant for the
  gradient; σ = uᵀWv and the layer runs with W / σ, so the gradient flows through σ;
- at inference (`training` False or None) the stored u and v give σ, nothing is updated.

tensorflow-addons' and Keras 2.15's `SpectralNormalization` instead assign W / σ into the kernel
variable, which changes what the optimiser updates and what a checkpoint holds.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_TRANSPOSED = (tf.keras.layers.Conv1DTranspose, tf.keras.layers.Conv2DTranspose, tf.keras.layers.Conv3DTranspose)


def _normalize(vector: tf.Tensor, epsilon: float) -> tf.Tensor:
    """`torch.nn.functional.normalize(x, dim=0, eps)`: x / max(||x||, eps)."""
    return vector / tf.maximum(tf.norm(vector), epsilon)


def _unit_normal(shape, dtype=None, **kwargs):
    """PyTorch's initial u and v: a standard normal draw scaled to unit length."""
    return _normalize(tf.random.normal(shape, dtype=dtype or tf.float32), 1e-12)


def kernel_permutation(rank: int, transposed: bool):
    """Axes that take a TF kernel to PyTorch's layout with the output channels first.

    Conv (..., in, out) -> (out, in, ...); transposed conv (..., out, in) -> (out, in, ...);
    Dense (in, out) -> (out, in).
    """
    spatial = list(range(rank - 2))
    return [rank - 2, rank - 1] + spatial if transposed else [rank - 1, rank - 2] + spatial


@tf.keras.utils.register_keras_serializable(package="tfrf")
class SpectralNormalization(tf.keras.layers.Wrapper):
    """Wraps a Conv / Conv-transpose / Dense layer so that it runs with W / σ(W).

    Args:
        layer: a Keras layer with a `kernel` (Conv1D/2D/3D, their transposes, Dense).
        power_iterations: power-iteration steps per training forward pass (PyTorch's
            `n_power_iterations`, default 1).
        epsilon: the norm floor of the vector normalisation (PyTorch's `eps`, 1e-12).

    Call: `inputs` as the wrapped layer takes them, `training` (bool): update u and v first.
    Variables: the wrapped layer's (its kernel is `weight_orig`), plus non-trainable `u`
    [out] and `v` [numel / out], float32 (on-read synchronised, like batch-norm statistics,
    so that each replica of a distribution strategy updates its own copy identically).
    """

    def __init__(self, layer: tf.keras.layers.Layer, power_iterations: int = 1, epsilon: float = 1e-12, **kwargs):
        if not isinstance(layer, tf.keras.layers.Layer):
            raise ValueError(f"SpectralNormalization wraps a Keras layer, got {layer!r}")
        if int(power_iterations) < 1:
            raise ValueError(f"SpectralNormalization: power_iterations must be >= 1, got {power_iterations}")
        # The normalisation runs in the variables' dtype (float32 under mixed precision); the
        # wrapped layer casts as its own policy says. Inputs pass through uncast.
        kwargs["dtype"] = layer.dtype
        kwargs["autocast"] = False
        super().__init__(layer, **kwargs)
        self.power_iterations = int(power_iterations)
        self.epsilon = float(epsilon)
        self.transposed = isinstance(layer, _TRANSPOSED)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernel = getattr(self.layer, "kernel", None)
        if not isinstance(kernel, tf.Variable):
            raise ValueError(
                f"SpectralNormalization: the wrapped layer {self.layer.name!r} "
                f"({type(self.layer).__name__}) has no `kernel` variable"
            )
        rank = kernel.shape.rank
        self.permutation = kernel_permutation(rank, self.transposed)
        rows = int(kernel.shape[self.permutation[0]])
        columns = int(np.prod(kernel.shape)) // rows
        # PyTorch starts from random unit vectors; here they are advanced by one training pass's
        # power iteration on the initial kernel, so that σ = ||Wv|| > 0 already at inference
        # before the first training pass (a random uᵀWv can be tiny or negative, and a
        # discriminator of 16 such layers then outputs ~1e10).
        with tf.init_scope():
            # Built from inside a float16 parent's call, the kernel reads as float16: cast back.
            matrix = self.kernel_matrix(tf.cast(tf.convert_to_tensor(kernel), kernel.dtype))
            initial_u, initial_v = self.power_iteration(
                matrix, _unit_normal((rows,), kernel.dtype), _unit_normal((columns,), kernel.dtype)
            )
        on_read = dict(
            trainable=False,
            dtype=kernel.dtype,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN,
        )
        self.u = self.add_weight(name="u", shape=(rows,), initializer=lambda *_, **__: initial_u, **on_read)
        self.v = self.add_weight(name="v", shape=(columns,), initializer=lambda *_, **__: initial_v, **on_read)
        super().build(input_shape)

    @property
    def weight_orig(self) -> tf.Variable:
        """The trainable kernel in TF layout (PyTorch's `weight_orig`)."""
        return self.layer.kernel

    def kernel_matrix(self, kernel: tf.Tensor) -> tf.Tensor:
        """A TF-layout kernel as PyTorch's matrix `W` [out, in * kh * kw]."""
        kernel = tf.transpose(kernel, self.permutation)
        return tf.reshape(kernel, [tf.shape(kernel)[0], -1])

    def power_iteration(self, matrix: tf.Tensor, u: tf.Tensor, v: tf.Tensor):
        """`power_iterations` steps v = normalize(Wᵀu), u = normalize(Wv); returns (u, v)."""
        matrix = tf.stop_gradient(matrix)
        for _ in range(self.power_iterations):
            v = _normalize(tf.linalg.matvec(matrix, u, transpose_a=True), self.epsilon)
            u = _normalize(tf.linalg.matvec(matrix, v), self.epsilon)
        return u, v

    def sigma(self, training=False) -> tf.Tensor:
        """σ = uᵀWv, with (training) or without (inference) a power-iteration update of u, v."""
        kernel = tf.convert_to_tensor(self.layer.kernel)
        matrix = self.kernel_matrix(kernel)
        u, v = tf.convert_to_tensor(self.u), tf.convert_to_tensor(self.v)
        if training:
            u, v = self.power_iteration(matrix, u, v)
            self.u.assign(u)
            self.v.assign(v)
        u, v = tf.stop_gradient(u), tf.stop_gradient(v)
        return tf.tensordot(u, tf.linalg.matvec(matrix, v), 1)

    def normalized_kernel(self, training=False) -> tf.Tensor:
        """W / σ in TF layout and the variables' dtype; the gradient flows through σ."""
        return tf.convert_to_tensor(self.layer.kernel) / self.sigma(training)

    def call(self, inputs, training=None):
        """inputs -> the wrapped layer's output computed with the kernel W / σ."""
        if isinstance(training, tf.Tensor):
            kernel = tf.cond(training, lambda: self.normalized_kernel(True), lambda: self.normalized_kernel(False))
        else:
            kernel = self.normalized_kernel(bool(training))
        kernel = tf.cast(kernel, self.layer.compute_dtype)
        # Run the wrapped layer with the normalised tensor in place of its kernel variable.
        # `object.__setattr__` bypasses Keras' attribute tracking, so the variable stays the
        # layer's (and the optimiser's) weight; it is put back right after the call.
        original = self.layer.kernel
        object.__setattr__(self.layer, "kernel", kernel)
        try:
            return self.layer(inputs)
        finally:
            object.__setattr__(self.layer, "kernel", original)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def set_torch_weights(self, weight_orig, weight_u=None, weight_v=None, bias=None) -> None:
        """Loads a PyTorch spectral-norm state: `weight_orig` in PyTorch layout ((out, in, kh, kw),
        a transposed conv's (in, out, kh, kw), or a Linear's (out, in)), `weight_u` [out],
        `weight_v` [in * kh * kw] and the optional bias. The layer must be built."""
        if not self.built:
            raise ValueError(f"SpectralNormalization {self.name!r}: build the layer before loading weights")
        weight_orig = np.asarray(weight_orig)
        # PyTorch layout -> TF layout: invert the permutation of `kernel_matrix`.
        torch_to_tf = np.argsort(self.permutation)
        if self.transposed:  # PyTorch stores (in, out, ...), not (out, in, ...)
            weight_orig = np.swapaxes(weight_orig, 0, 1)
        kernel = np.transpose(weight_orig, torch_to_tf)
        if kernel.shape != tuple(self.layer.kernel.shape):
            raise ValueError(
                f"SpectralNormalization {self.name!r}: weight_orig {np.asarray(weight_orig).shape} does not fit "
                f"the kernel {tuple(self.layer.kernel.shape)}"
            )
        self.layer.kernel.assign(kernel)
        for name, value, variable in (("weight_u", weight_u, self.u), ("weight_v", weight_v, self.v)):
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape != tuple(variable.shape):
                raise ValueError(
                    f"SpectralNormalization {self.name!r}: {name} has shape {value.shape}, expected {tuple(variable.shape)}"
                )
            variable.assign(value)
        if bias is not None:
            if getattr(self.layer, "bias", None) is None:
                raise ValueError(f"SpectralNormalization {self.name!r}: the wrapped layer has no bias")
            self.layer.bias.assign(np.asarray(bias))

    def get_config(self):
        config = super().get_config()
        config.pop("autocast", None)
        config.update({"power_iterations": self.power_iterations, "epsilon": self.epsilon})
        return config
