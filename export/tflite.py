"""TFLite export: builtin ops only, an `encode_sources` and a `render` signature (and, for faces,
`encode_crops` and `render_landmarks`, which take landmark coordinates).

A phone encodes the K sources once and renders each driving frame from the cached features:

| signature | inputs | outputs |
|---|---|---|
| `encode_sources` | `source_images` `[1,K,H,W,3]` in [-1, 1] | `source_features_h8` `[1,K,H/8,W/8,C8]`, `source_features_h4` `[1,K,H/4,W/4,C4]` |
| `render` | `source_images`, `source_poses` `[1,K,H,W,Cp]`, `source_features_h8`, `source_features_h4`, `target_pose` `[1,H,W,Cp]` | `image` `[1,H,W,3]` in [-1, 1] |
| `encode_crops` (faces) | `source_crops` uint8 `[K,H,W,3]`, `source_landmarks` `[K,68,2]` | `source_images`, `source_poses`, `source_features_h8`, `source_features_h4` (the cached encoding) |
| `render_landmarks` (faces) | the cached encoding, `target_landmarks` `[68,2]` | `image` `[1,H,W,3]` in [-1, 1] |

The face signatures take (x, y) landmarks in crop pixels (pixel centres at integers, iBUG-68
order) and draw the pose in the graph (`tfrf.pose.face_graph.draw_landmarks_graph`, equal to
`tfrf.pose.face.draw_landmarks`), so an app needs no drawing code; crops as the dataset's
(`tfrf.pose.face.crop_face`: the landmarks' box + 25 % margin, square, resized to H x W). They
are in the float32, float16 and dynamic-int8 exports of a face preset (pose channels 3), not
in full-int8 (calibration would quantise the drawing's coordinate arithmetic): for those,
`export/tflite_drawing.py` builds a separate float32 drawing model (`draw_crops`, `draw_target`)
whose outputs feed `encode_sources` and `render` (for native apps; `tfrf web`'s page draws the
same poses in JavaScript, `tfrf/web/static/draw.js`).

All signature tensors but `source_crops` are float32 (also in the float16 and dynamic-int8 variants, which quantise
the weights only, and in full-int8, which quantises weights and activations to int8 from a
representative dataset and keeps float32 inputs and outputs; ops without an int8 kernel,
FLOOR of the warp, stay float).

Export kernels (`convert(..., export_kernels=True)`, the default): the generator is traced as
built with `impl="export"` (`tfrf.layers.impl`; `convert` rebuilds a default-built generator
that way with a copy of its weights, `tfrf.models.rebuild_generator`), so training graphs never
see it: LEAKY_RELU instead of MUL + MAXIMUM, instance norm as one scale and shift, residual blocks
with the 1x1 shortcut at the low resolution and upsampling + 3x3 conv as one low-resolution conv
+ DEPTH_TO_SPACE, the fusing block's warps as one padded corner gather with eq. 6 folded into the
weights and its residual conv split instead of concatenated (see `ResidualFusingBlock`). The
output equals the training graph's up to float32 rounding. Shapes are fixed (B = 1, the K given
at export) so the interpreter plans its memory once. What `render` cannot skip: the flow confidence extractor sees the source image
and pose concatenated with the target pose, so it runs for every frame; only the source
appearance extractor is cached. Bind inputs by name (`interpreter.get_signature_runner`): the
converter may reorder them.

The converter's statistics (C++ output on stderr) are held back (`tfrf.io.held_stderr`) and shown
only when the conversion fails or in verbose mode. A model is checked before an interpreter sees
it (`check_flatbuffer`: the TFL3 identifier, the root table, every reference of the model read
with bounds checks, the buffers stored after the flatbuffer), since the interpreter itself
crashes on a truncated file.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Union

import numpy as np

import tensorflow as tf

from tfrf.export.tflite_format import FILE_IDENTIFIER, check_builtin_ops, check_flatbuffer, operator_names  # noqa: F401
from tfrf.export.tflite_gpu import gpu_ready
from tfrf.io import atomic_write_bytes, held_stderr
from tfrf.models import rebuild_generator

QUANTIZATIONS = ("none", "float16", "dynamic-int8", "full-int8")
ENCODE_SIGNATURE = "encode_sources"
RENDER_SIGNATURE = "render"
ENCODE_CROPS_SIGNATURE = "encode_crops"
RENDER_LANDMARKS_SIGNATURE = "render_landmarks"
FACE_POSE_CHANNELS = 3  # the landmarks68 drawing


def takes_landmarks(config) -> bool:
    """Whether `config` is a face model (its pose is the 68-landmark drawing)."""
    return config.pose_channels == FACE_POSE_CHANNELS


def feature_shapes(config, num_sources: int) -> Dict[str, List[int]]:
    """Static shapes of the cached source features per level, `[1, K, h, w, C]`."""
    h, w = config.image_height, config.image_width
    return {
        "h8": [1, num_sources, h // 8, w // 8, config.channels(256)],
        "h4": [1, num_sources, h // 4, w // 4, config.channels(128)],
    }


def tflite_module(generator, num_sources: int, landmark_signatures: bool = False) -> tf.Module:
    """A `tf.Module` with the `encode_sources` and `render` functions at fixed shapes.

    Args:
        generator: a built Generator with `warp_backend="gather"` and
            `order_invariant_fusion=False` (`export_generator(config, tflite=True)`).
        num_sources: K.
        landmark_signatures: also `encode_crops` and `render_landmarks` (face models only).
    """
    config = generator.config
    if config.warp_backend != "gather" or config.order_invariant_fusion:
        raise ValueError(
            "TFLite export needs warp_backend='gather' and order_invariant_fusion=False (no Addons ops, "
            f"no float64), got {config.warp_backend!r} and {config.order_invariant_fusion}; "
            "build it with tfrf.export.export_generator(config, tflite=True)"
        )
    if num_sources < 1:
        raise ValueError(f"num_sources (K) must be >= 1, got {num_sources}")
    h, w, cp, k = config.image_height, config.image_width, config.pose_channels, num_sources
    features = feature_shapes(config, k)
    images_spec = tf.TensorSpec([1, k, h, w, 3], tf.float32, name="source_images")
    module = tf.Module(name="tfrf_face_tflite")
    module.generator_variables = list(generator.variables)

    @tf.function(input_signature=[images_spec])
    def encode_sources(source_images):
        encoded = generator.encode_sources(source_images)
        return {f"source_features_{level}": encoded[level] for level in ("h8", "h4")}

    @tf.function(
        input_signature=[
            images_spec,
            tf.TensorSpec([1, k, h, w, cp], tf.float32, name="source_poses"),
            tf.TensorSpec(features["h8"], tf.float32, name="source_features_h8"),
            tf.TensorSpec(features["h4"], tf.float32, name="source_features_h4"),
            tf.TensorSpec([1, h, w, cp], tf.float32, name="target_pose"),
        ]
    )
    def render(source_images, source_poses, source_features_h8, source_features_h4, target_pose):
        flow_outputs = generator.extract_flows(
            {"source_images": source_images, "source_poses": source_poses, "target_pose": target_pose}
        )
        image = generator.predictor(
            target_pose, {"h8": source_features_h8, "h4": source_features_h4}, flow_outputs
        )
        return {"image": image}

    module.encode_sources = encode_sources
    module.render = render
    module.tflite_signatures = {ENCODE_SIGNATURE: encode_sources, RENDER_SIGNATURE: render}
    if landmark_signatures:
        _add_landmark_signatures(module, config, k, features)
    return module


def landmark_input_specs(k: int, height: int, width: int) -> Dict[str, tf.TensorSpec]:
    """The face signatures' landmark-side inputs: `source_crops` uint8 `[K,H,W,3]`,
    `source_landmarks` `[K,68,2]`, `target_landmarks` `[68,2]` (shared with
    `tfrf.export.tflite_drawing`)."""
    from tfrf.pose.face import NUM_LANDMARKS

    return {"source_crops": tf.TensorSpec([k, height, width, 3], tf.uint8, name="source_crops"),
            "source_landmarks": tf.TensorSpec([k, NUM_LANDMARKS, 2], tf.float32, name="source_landmarks"),
            "target_landmarks": tf.TensorSpec([NUM_LANDMARKS, 2], tf.float32, name="target_landmarks")}


def draw_sources(source_crops, source_landmarks, height: int, width: int):
    """(`source_images` `[1,K,H,W,3]` in [-1, 1], `source_poses` `[1,K,H,W,3]`) of uint8 crops and
    their landmarks: what `encode_crops` feeds the encoder (and `tfrf.export.tflite_drawing`'s
    `draw_crops` returns)."""
    from tfrf.pose.face_graph import draw_landmarks_graph

    images = tf.expand_dims(tf.cast(source_crops, tf.float32) / 127.5 - 1.0, 0)
    poses = tf.expand_dims(draw_landmarks_graph(source_landmarks, height, width), 0)
    return images, poses


def draw_target(target_landmarks, height: int, width: int):
    """`target_pose` `[1,H,W,3]` of `[68,2]` landmarks: what `render_landmarks` feeds `render`."""
    from tfrf.pose.face_graph import draw_landmarks_graph

    return tf.expand_dims(draw_landmarks_graph(target_landmarks, height, width), 0)


def _add_landmark_signatures(module, config, k: int, features) -> None:
    """`encode_crops` and `render_landmarks` on `module` (see the module docstring)."""
    if not takes_landmarks(config):
        raise ValueError(f"landmark signatures need a face model (pose channels {FACE_POSE_CHANNELS}), "
                         f"got pose channels {config.pose_channels}")
    h, w = config.image_height, config.image_width
    specs = landmark_input_specs(k, h, w)

    @tf.function(input_signature=[specs["source_crops"], specs["source_landmarks"]])
    def encode_crops(source_crops, source_landmarks):
        images, poses = draw_sources(source_crops, source_landmarks, h, w)
        return {"source_images": images, "source_poses": poses, **module.encode_sources(images)}

    @tf.function(input_signature=[
        tf.TensorSpec([1, k, h, w, 3], tf.float32, name="source_images"),
        tf.TensorSpec([1, k, h, w, FACE_POSE_CHANNELS], tf.float32, name="source_poses"),
        tf.TensorSpec(features["h8"], tf.float32, name="source_features_h8"),
        tf.TensorSpec(features["h4"], tf.float32, name="source_features_h4"),
        specs["target_landmarks"],
    ])
    def render_landmarks(source_images, source_poses, source_features_h8, source_features_h4, target_landmarks):
        target_pose = draw_target(target_landmarks, h, w)
        return module.render(source_images, source_poses, source_features_h8, source_features_h4, target_pose)

    module.encode_crops = encode_crops
    module.render_landmarks = render_landmarks
    module.tflite_signatures.update({ENCODE_CROPS_SIGNATURE: encode_crops, RENDER_LANDMARKS_SIGNATURE: render_landmarks})


def random_representative_inputs(config, num_sources: int, count: int = 8, seed: int = 0) -> List[Dict[str, np.ndarray]]:
    """`count` synthetic render inputs (images uniform in [-1, 1], poses in [0, 1]) for
    calibration when no real frames are at hand; real frames calibrate better."""
    rng = np.random.default_rng(seed)
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    return [
        {
            "source_images": rng.uniform(-1, 1, (1, num_sources, h, w, 3)).astype(np.float32),
            "source_poses": rng.uniform(0, 1, (1, num_sources, h, w, cp)).astype(np.float32),
            "target_pose": rng.uniform(0, 1, (1, h, w, cp)).astype(np.float32),
        }
        for _ in range(count)
    ]


def _representative_dataset(generator, samples: Iterable[Mapping[str, np.ndarray]]) -> Callable:
    """Calibration samples for both signatures: `(signature_key, inputs)` pairs; the cached
    features fed to `render` are the float model's `encode_sources` outputs."""
    samples = list(samples)
    if not samples:
        raise ValueError("full-int8 quantization needs at least one representative sample")
    required = ("source_images", "source_poses", "target_pose")

    def dataset():
        for sample in samples:
            missing = [key for key in required if key not in sample]
            if missing:
                raise ValueError(f"representative sample lacks {missing}; expected keys {required}")
            images = np.asarray(sample["source_images"], np.float32)
            features = generator.encode_sources(images)
            yield ENCODE_SIGNATURE, {"source_images": images}
            yield RENDER_SIGNATURE, {
                "source_images": images,
                "source_poses": np.asarray(sample["source_poses"], np.float32),
                "target_pose": np.asarray(sample["target_pose"], np.float32),
                "source_features_h8": features["h8"].numpy(),
                "source_features_h4": features["h4"].numpy(),
            }

    return dataset


def convert(generator, num_sources: int, quantize: str = "none", export_kernels: bool = True,
            representative_inputs: Optional[Iterable[Mapping[str, np.ndarray]]] = None,
            landmark_signatures: Optional[bool] = None) -> bytes:
    """The TFLite flatbuffer of `tflite_module(generator, num_sources)`.

    Args:
        generator: see `tflite_module`.
        num_sources: K.
        quantize: "none" (float32), "float16" (float16 weights), "dynamic-int8" (int8
            weights, activations quantised on the fly by the hybrid kernels) or "full-int8"
            (int8 weights and activations calibrated on `representative_inputs`; float32
            signature inputs and outputs).
        export_kernels: trace the generator built with `impl="export"` (see the module
            docstring); False traces it as it was built.
        representative_inputs: full-int8 only: dicts of `source_images`, `source_poses`,
            `target_pose` with K = num_sources (default: `random_representative_inputs`).
        landmark_signatures: add `encode_crops` and `render_landmarks`; default: for a face
            model (`takes_landmarks`) unless full-int8.

    Raises:
        ValueError: for an unknown `quantize`, or when the model holds a non-builtin op.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if landmark_signatures is None:
        landmark_signatures = takes_landmarks(generator.config) and quantize != "full-int8"
    if landmark_signatures and quantize == "full-int8":
        raise ValueError("full-int8 exports have no landmark signatures: calibration would quantise the drawing")
    if export_kernels:
        generator = rebuild_generator(generator, "export")
    module = tflite_module(generator, num_sources, landmark_signatures)

    def configure(converter):
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "full-int8":
            inputs = representative_inputs
            if inputs is None:
                inputs = random_representative_inputs(generator.config, num_sources)
            converter.representative_dataset = _representative_dataset(generator, inputs)
            # int8 kernels wherever they exist; the few ops without one (FLOOR) stay float.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]

    return module_flatbuffer(module, configure)


def module_flatbuffer(module: tf.Module, configure: Optional[Callable] = None) -> bytes:
    """The TFLite flatbuffer of `module`'s `tflite_signatures` (name -> tf.function) through a
    SavedModel, builtin ops only; `configure(converter)` may set quantisation first. The
    converter's statistics are held back (shown on failure or with --verbose); the result is
    `gpu_ready` and checked for builtin ops."""
    directory = tempfile.mkdtemp(prefix="tfrf-tflite-")
    try:
        with held_stderr():  # the converter's statistics: shown on failure or with --verbose
            tf.saved_model.save(module, directory, signatures=module.tflite_signatures)
            converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(module.tflite_signatures))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            converter.allow_custom_ops = False
            if configure is not None:
                configure(converter)
            model = converter.convert()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    model = gpu_ready(model)  # what TFLite's GPU delegate takes (`tfrf.export.tflite_gpu`)
    check_builtin_ops(model)
    return model


def export_tflite(generator, num_sources: int, path: str, quantize: str = "none", **options) -> str:
    """Converts (see `convert`; `options` go to it) and writes `path` atomically (`tfrf.io`:
    the umask's mode, nothing left on failure); returns `path`."""
    model = convert(generator, num_sources, quantize, **options)
    atomic_write_bytes(path, model)
    return path


def runtime_name() -> str:
    """The runtime `load_interpreter` uses: "ai-edge-litert X.Y.Z" (the on-device runtime, the
    `litert` extra) when installed, otherwise "tf.lite (TF X.Y.Z)"."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        return f"tf.lite (TF {tf.__version__})"
    from importlib import metadata

    try:
        version = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        version = "unknown version"
    return f"ai-edge-litert {version}"


def load_interpreter(model: Union[str, bytes], num_threads: int = 2):
    """A TFLite interpreter: `ai-edge-litert` (the on-device runtime) when installed,
    otherwise `tf.lite.Interpreter`. Run it through `get_signature_runner(name)`.

    Do not call `allocate_tensors()` on it: with a multi-signature float16 model the TF 2.15
    interpreter then returns wrong images that differ from run to run; each signature runner
    allocates its own subgraph.

    Args:
        model: a `.tflite` path or the flatbuffer bytes.
        num_threads: CPU threads of the interpreter.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the model when it is empty, foreign, truncated or corrupt
            (`check_flatbuffer`), or when the interpreter refuses it.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    if isinstance(model, (bytes, bytearray)):
        name = "the TFLite model"
        check_flatbuffer(model, name)
        options = {"model_content": bytes(model)}
    else:
        name = f"TFLite model {model}"
        if not os.path.isfile(model):
            raise FileNotFoundError(f"{name} does not exist")
        with open(model, "rb") as stream:
            check_flatbuffer(stream.read(), name)
        options = {"model_path": model}
    try:
        return Interpreter(num_threads=num_threads, **options)
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{name} cannot be loaded: {str(error).strip() or type(error).__name__}") from error
