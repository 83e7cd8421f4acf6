"""One VGG19 feature extractor serving every VGG-based loss of a training step.

The sampling-correctness loss (relu3_1, relu4_1), the perceptual loss (relu1_1 ... relu5_1) and
the style loss (Gram matrices of the same layers) all read the activations of one forward pass
per image: the training step calls `VGGFeatures` once on the target, once on each source and
once on the generated image, and hands the resulting feature dicts to the loss functions.

Layer names follow the papers (`relu{block}_{conv}`); Keras' VGG19 calls the same activations
`block{block}_conv{conv}` (its convolutions carry the ReLU), and either spelling is accepted.

Weights and input conventions:
- Keras' ImageNet VGG19 (`weights="imagenet"` or a Keras `.h5`) expects Caffe-style input: BGR
  pixels in [0, 255] with the ImageNet mean removed (`preprocessing="caffe"`, the default).
- GFLA (Ren et al. CVPR 2020, `external_function.py`) uses torchvision's VGG19
  (`vgg19-dcbb9e9d.pth`) and feeds it the generator's RGB images in [-1, 1] as they are, no mean
  or std (`preprocessing="gfla"`); torchvision's own convention, RGB in [0, 1] standardised by
  the ImageNet mean and std, is `preprocessing="torchvision"`. A torchvision state dict loads from
  the `.pth` (needs PyTorch), from an `.npz` with the same keys (`features.0.weight`, ...; conv
  weights (O, I, kh, kw) become Keras kernels (kh, kw, I, O)), or from a mapping of arrays
  (`load_torch_weights`); missing or unknown keys are refused, the classifier is ignored.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

PERCEPTUAL_LAYERS: Tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Input conventions (see the module docstring); "caffe" is Keras' ImageNet VGG19's.
PREPROCESSING: Tuple[str, ...] = ("caffe", "gfla", "torchvision")

# Caffe-style ImageNet preprocessing that the Keras VGG19 weights expect: BGR, mean removed.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
# torchvision's ImageNet normalisation of RGB in [0, 1].
_IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_RGB_STD = (0.229, 0.224, 0.225)

# torchvision `vgg19().features` index of each convolution, in Keras' layer names.
_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
def _torchvision_feature_index() -> Dict[str, int]:
    table, index = {}, 0
    for block, convs in enumerate(_CONVS_PER_BLOCK, start=1):
        for conv in range(1, convs + 1):
            table[f"block{block}_conv{conv}"] = index
            index += 2  # conv, ReLU
        index += 1  # max pool
    return table


TORCHVISION_FEATURE_INDEX: Dict[str, int] = _torchvision_feature_index()  # block5_conv4 -> 34

_TORCH_WEIGHT_SUFFIXES = (".pth", ".pt", ".npz")

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
    if not 1 <= block <= 5 or not 1 <= conv <= _CONVS_PER_BLOCK[block - 1]:
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


def preprocess_images(images: tf.Tensor, preprocessing: str = "caffe") -> tf.Tensor:
    """RGB images in [-1, 1] `[..., 3]` -> the input VGG19 expects under `preprocessing`.

    "caffe": BGR in [0, 255], ImageNet mean removed (Keras' VGG19). "gfla": unchanged (GFLA feeds
    torchvision's VGG19 the [-1, 1] RGB images). "torchvision": RGB in [0, 1], minus the ImageNet
    mean, over its std.
    """
    images = tf.cast(images, tf.float32)
    if preprocessing == "caffe":
        pixels = (images + 1.0) * 127.5
        return pixels[..., ::-1] - tf.constant(_IMAGENET_BGR_MEAN, tf.float32)
    if preprocessing == "gfla":
        return images
    if preprocessing == "torchvision":
        unit = (images + 1.0) * 0.5
        return (unit - tf.constant(_IMAGENET_RGB_MEAN, tf.float32)) / tf.constant(_IMAGENET_RGB_STD, tf.float32)
    raise ValueError(f"VGGFeatures: preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")


# What `tf.keras.applications.VGG19(include_top=False, weights="imagenet")` reads from Keras' cache.
IMAGENET_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def keras_cache_paths(file_name: str):
    """Where Keras' `get_file` looks for a cached `models/` file: `$KERAS_HOME` or `~/.keras`,
    and `/tmp/.keras` (its fall-back when that folder is not writable)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [os.path.join(folder, "models", file_name) for folder in (home, os.path.join("/tmp", ".keras"))]


def check_weights_available(weights: Optional[str], flag: str = "--vgg-weights") -> None:
    """Refuse, before anything is created, VGG19 weights that are not on this machine: "imagenet"
    without Keras' cached file (Keras would download it), or a path that does not exist.

    Raises:
        FileNotFoundError: one line naming `flag` and where Keras caches the file.
    """
    if weights is None:
        return
    if weights != "imagenet":
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{flag} {weights} does not exist")
        return
    cached = keras_cache_paths(IMAGENET_WEIGHTS_FILE)
    if not any(os.path.isfile(path) for path in cached):
        raise FileNotFoundError(
            f"the ImageNet VGG19 weights of the perceptual, style and correctness losses are not on this machine "
            f"(Keras caches them as {cached[0]}); nothing downloads: put {IMAGENET_WEIGHTS_FILE} there, give "
            f"{flag} PATH to a local copy (.h5, or torchvision's vgg19-dcbb9e9d.pth), or {flag} none for random "
            "VGG features")


def _is_torch_file(weights: Any) -> bool:
    return isinstance(weights, (str, os.PathLike)) and os.fspath(weights).lower().endswith(_TORCH_WEIGHT_SUFFIXES)


class VGGFeatures(tf.keras.layers.Layer):
    """Frozen VGG19 activations of images in [-1, 1], as a dict keyed by layer name.

    Args:
        layers: activations to return, paper (`relu4_1`) or Keras (`block4_conv1`) names.
            Defaults to relu1_1 ... relu5_1, which every loss of the paper reads.
        weights: "imagenet" (Keras' loader and cache; may download on first use), a path to a
            local weights file for `VGG19(include_top=False)` (.h5), a torchvision VGG19 state
            dict (`vgg19-dcbb9e9d.pth`, needs PyTorch, or the same keys as `.npz`), or None
            (random, for tests).
        preprocessing: the input convention, one of `PREPROCESSING`: "caffe" (Keras' ImageNet
            VGG19, the default), "gfla" (torchvision's VGG19 fed [-1, 1] RGB, as GFLA trains) or
            "torchvision" (ImageNet mean/std). Choose the one the weights were trained with;
            GFLA's losses use torchvision weights with "gfla".

    Call: `images [B, H, W, 3]` in [-1, 1] -> `{name: [B, H/s, W/s, C]}` float32, with s the
    layer's stride (`layer_stride`). The preprocessing happens inside.
    """

    def __init__(self, layers: Sequence[str] = PERCEPTUAL_LAYERS, weights: Optional[str] = "imagenet",
                 preprocessing: str = "caffe", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(layers, str):
            layers = (layers,)
        if not layers:
            raise ValueError("VGGFeatures: `layers` must name at least one VGG19 activation")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"VGGFeatures: preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
        self.layer_names = tuple(layer_name(name) for name in layers)
        if weights is not None and weights != "imagenet" and not os.path.isfile(weights):
            raise ValueError(f"VGGFeatures: weights must be 'imagenet', None or an existing file; got {weights!r}")
        self.weights_source = weights
        self.preprocessing = preprocessing
        torch_file = _is_torch_file(weights)
        backbone = tf.keras.applications.VGG19(
            include_top=False, weights=None if torch_file else weights, input_shape=(None, None, 3)
        )
        outputs = {name: backbone.get_layer(_keras_name(name)).output for name in self.layer_names}
        self.backbone = tf.keras.Model(backbone.input, outputs, name="vgg19_features")
        self.backbone.trainable = False
        if torch_file:
            self.load_torch_weights(weights)

    def load_torch_weights(self, state: Union[str, "os.PathLike[str]", Mapping[str, Any]]) -> None:
        """Load torchvision's VGG19 state dict (`features.{i}.weight` (O, I, 3, 3), `.bias`).

        Args:
            state: a `.pth`/`.pt` path (needs PyTorch), an `.npz` path with the same keys, or a
                mapping from key to array.
        Raises:
            ValueError: naming missing keys, unknown keys or mismatched shapes; `classifier.*`
                and the convolutions deeper than this extractor's last layer are ignored.
            FileNotFoundError: the file does not exist. ImportError: a `.pth` without PyTorch.
        """
        from tfrf.metrics import torch_weights  # the project's one reader of PyTorch state dicts

        what = "VGGFeatures (torchvision VGG19)"
        values = torch_weights.read_state_dict(state, what)
        plan, ignored = {}, ["classifier."]
        used = {layer.name for layer in self.backbone.layers}
        for name, index in TORCHVISION_FEATURE_INDEX.items():
            if name not in used:  # deeper than the requested activations: never built
                ignored.append(f"features.{index}.")
                continue
            conv = self.backbone.get_layer(name)
            plan[f"features.{index}.weight"] = (conv.kernel, torch_weights.conv_kernel)
            plan[f"features.{index}.bias"] = (conv.bias, torch_weights.identity)
        torch_weights.assign_state(values, plan, what, ignored_prefixes=tuple(ignored))

    @staticmethod
    def preprocess(images: tf.Tensor) -> tf.Tensor:
        """Map RGB images in [-1, 1] to the Caffe-style input of Keras' VGG19 (BGR, mean removed)."""
        return preprocess_images(images, "caffe")

    def features(self, images: Optional[tf.Tensor], layers: Sequence[str],
                 start: Optional[Tuple[str, tf.Tensor]] = None) -> Dict[str, tf.Tensor]:
        """The activations of `layers` only, running VGG19 no deeper than the deepest of them.

        Args:
            images: `[B, H, W, 3]` in [-1, 1] (None with `start`).
            layers: a subset of this extractor's `layer_names`.
            start: `(layer, activation)`, e.g. `("relu4_1", features["relu4_1"])`: continue from
                that activation instead of the images, so a part of a batch can go deeper than
                the rest without recomputing the shallow layers.

        Returns:
            `{layer name: float32 [B, H/s, W/s, C]}` for `layers`.
        """
        wanted = tuple(layer_name(name) for name in layers)
        unknown = sorted(set(wanted) - set(self.layer_names))
        if unknown:
            raise ValueError(f"VGGFeatures.features: layers {unknown} are not among this extractor's "
                             f"{list(self.layer_names)}")
        stack = [layer for layer in self.backbone.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
        names = [layer.name for layer in stack]
        if start is None:
            x, begin = preprocess_images(images, self.preprocessing), 0
        else:
            begin = names.index(_keras_name(start[0])) + 1
            x = start[1]
        keras_names = {_keras_name(name): name for name in wanted}
        deepest = max(names.index(name) for name in keras_names)
        if deepest < begin:
            raise ValueError(f"VGGFeatures.features: {list(wanted)} lie before the start layer {start[0]!r}")
        outputs = {}
        for layer in stack[begin:deepest + 1]:
            x = layer(x)
            if layer.name in keras_names:
                outputs[keras_names[layer.name]] = tf.cast(x, tf.float32)
        return outputs

    def call(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """images [B, H, W, 3] in [-1, 1] -> {layer name: float32 [B, H/s, W/s, C]}."""
        if images.shape.rank is not None and (images.shape.rank != 4 or images.shape[-1] not in (None, 3)):
            raise ValueError(f"VGGFeatures: images must be [B, H, W, 3] in [-1, 1], got shape {images.shape}")
        features = self.backbone(preprocess_images(images, self.preprocessing), training=False)
        return {name: tf.cast(features[name], tf.float32) for name in self.layer_names}

    def get_config(self):
        config = super().get_config()
        config.update(
            {"layers": list(self.layer_names), "weights": self.weights_source, "preprocessing": self.preprocessing}
        )
        return config
