"""SavedModel export for TF-Serving: `MODEL_DIR/NAME/VERSION/`, written atomically.

Signatures (tag `serve`; B and K unknown, so one model serves every batch size and every
K >= 1; H, W and Cp fixed by the configuration):

| signature | inputs | output |
|---|---|---|
| `serving_default` | `source_images` float32 `[B,K,H,W,3]` in [-1, 1], `source_poses` float32 `[B,K,H,W,Cp]`, `target_pose` float32 `[B,H,W,Cp]` | `image` float32 `[B,H,W,3]` in [-1, 1] |
| `serving_uint8` | `source_images` uint8 `[B,K,H,W,3]` (0..255), the same float32 poses | `image` uint8 `[B,H,W,3]` |
| `photos` | `source_images` string `[B,K]` (JPEG or PNG, any size), `source_poses` float32 `[B,K,...]`, `target_pose` float32 `[B,...]`: raw poses (`tfrf.export.photos`) | `image` uint8 `[B,H,W,3]`, `coverage` float32 `[B,H,W,K+1]` |

Poses of the first two are float32 maps as the pose encoders produce them (heatmaps, one-hots, a
face drawing scaled to [0, 1]); `photos` takes what clients hold, photos and raw poses, and draws
the maps in the graph (`export/photos.py`; face models get it when `tfrf.pose.face_graph` exists). The graph asserts K >= 1 and that images and poses agree on B and K;
a violation is an INVALID_ARGUMENT error at run time.

The version directory is written under a temporary name that TF-Serving ignores (it only
loads directories whose name is an integer) and renamed when complete, so a server watching
`MODEL_DIR/NAME` never loads half a model. `assets.extra/tfrf_config.json` records the
ModelConfig.

Exports into one `MODEL_DIR/NAME` take turns (an exclusive `flock` on that folder, where the file
system has them): an export first removes the `.tmp-VERSION-*` folders that killed exports left
there, then picks its version. A failed write (a full disk) leaves no temporary folder and raises
an OSError naming the version folder.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from typing import Dict, Iterator, List, Optional

import tensorflow as tf

from tfrf.export.photos import PHOTOS_SIGNATURE, photos_function, photos_supported
from tfrf.io import atomic_directory

DEFAULT_SIGNATURE = "serving_default"
UINT8_SIGNATURE = "serving_uint8"
CONFIG_ASSET = os.path.join("assets.extra", "tfrf_config.json")
_VERSION = re.compile(r"^\d+$")
_TEMPORARY = re.compile(r"^\.tmp-\d+-")  # `tfrf.io.atomic_directory`'s name for version VERSION: .tmp-VERSION-RANDOM


def _input_specs(config, image_dtype: tf.DType):
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    return [
        tf.TensorSpec([None, None, h, w, 3], image_dtype, name="source_images"),
        tf.TensorSpec([None, None, h, w, cp], tf.float32, name="source_poses"),
        tf.TensorSpec([None, h, w, cp], tf.float32, name="target_pose"),
    ]


def _checked(source_images, source_poses, target_pose):
    """Run-time checks that the static signature cannot express (K >= 1, B and K agree)."""
    images, poses, target = tf.shape(source_images), tf.shape(source_poses), tf.shape(target_pose)
    checks = [
        tf.debugging.assert_greater(images[1], 0, message="source_images must hold K >= 1 sources [B, K, H, W, 3]"),
        tf.debugging.assert_equal(
            images[:2], poses[:2], message="source_poses must be [B, K, H, W, Cp] with the B and K of source_images"
        ),
        tf.debugging.assert_equal(
            images[0], target[0], message="target_pose must be [B, H, W, Cp] with the B of source_images"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(source_images), tf.identity(source_poses), tf.identity(target_pose)


def serving_module(generator) -> tf.Module:
    """A `tf.Module` holding the generator's variables and the two serving functions.

    Only the variables are tracked (not the Keras model), so saving neither traces nor
    serialises Keras layers: the SavedModel holds two plain graphs of core TF ops.

    Args:
        generator: a built `tfrf.models.Generator` with `warp_backend="gather"`.

    Returns:
        A module with `serving_default`, `serving_uint8` and (`photos_supported`) `photos`
        (`tf.function`s with signatures).
    """
    config = generator.config
    if config.warp_backend != "gather":
        raise ValueError(
            f"SavedModel export needs warp_backend='gather' (Addons>Resampler is not in TF-Serving), "
            f"got {config.warp_backend!r}; build it with tfrf.export.export_generator"
        )
    module = tf.Module(name="tfrf_generator")
    module.generator_variables = list(generator.variables)

    def generate(source_images, source_poses, target_pose):
        source_images, source_poses, target_pose = _checked(source_images, source_poses, target_pose)
        inputs = {"source_images": source_images, "source_poses": source_poses, "target_pose": target_pose}
        return generator(inputs, training=False)

    @tf.function(input_signature=_input_specs(config, tf.float32))
    def serving_default(source_images, source_poses, target_pose):
        return {"image": generate(source_images, source_poses, target_pose)}

    @tf.function(input_signature=_input_specs(config, tf.uint8))
    def serving_uint8(source_images, source_poses, target_pose):
        images = tf.cast(source_images, tf.float32) / 127.5 - 1.0
        image = generate(images, source_poses, target_pose)
        image = tf.clip_by_value(tf.round((image + 1.0) * 127.5), 0.0, 255.0)
        return {"image": tf.cast(image, tf.uint8)}

    module.serving_default = serving_default
    module.serving_uint8 = serving_uint8
    if photos_supported(config):
        module.photos = photos_function(generator, config)
    return module


def signatures(module: tf.Module) -> Dict[str, tf.types.experimental.GenericFunction]:
    """Signature name -> function of a `serving_module`."""
    functions = {DEFAULT_SIGNATURE: module.serving_default, UINT8_SIGNATURE: module.serving_uint8}
    if hasattr(module, "photos"):
        functions[PHOTOS_SIGNATURE] = module.photos
    return functions


def next_version(base_path: str) -> int:
    """1 + the largest integer version directory under `base_path` (1 when there is none)."""
    if not os.path.isdir(base_path):
        return 1
    versions = [int(name) for name in os.listdir(base_path) if _VERSION.match(name)]
    return max(versions, default=0) + 1


@contextlib.contextmanager
def exclusive(base_path: str) -> Iterator[bool]:
    """Holds an exclusive `flock` on the folder `base_path` for the block; yields whether it got
    one (False where the file system has no such locks)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (not POSIX)
        yield False
        return
    handle = os.open(base_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            locked = True
        except OSError:
            locked = False
        yield locked
    finally:
        os.close(handle)  # (releases the lock)


def remove_temporaries(base_path: str) -> List[str]:
    """Delete the `.tmp-VERSION-*` folders of killed exports in `base_path`; returns their names.
    Call it only while holding `exclusive(base_path)`: then no export is writing one."""
    removed = []
    for name in sorted(os.listdir(base_path)):
        path = os.path.join(base_path, name)
        if _TEMPORARY.match(name) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def _write_failure(path: str, error: Exception) -> OSError:
    """A TensorFlow write error as an OSError naming `path` (errno ENOSPC for a full disk)."""
    text = str(getattr(error, "message", None) or error).strip()
    if "No space left on device" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    code = errno.EACCES if isinstance(error, tf.errors.PermissionDeniedError) else errno.EIO
    return OSError(code, text.splitlines()[0] if text else type(error).__name__, path)


def export_saved_model(generator, base_path: str, version: Optional[int] = None) -> str:
    """Writes `base_path/VERSION/` (TF-Serving layout `MODEL_DIR/NAME/VERSION`) atomically.

    Args:
        generator: a built Generator with `warp_backend="gather"` (`export_generator`).
        base_path: the model's directory `MODEL_DIR/NAME`; created when missing.
        version: the version number; default `next_version(base_path)`.

    Returns:
        The path of the version directory.

    Raises:
        FileExistsError: when that version exists already.
        OSError: the write failed (e.g. a full disk), naming the version folder; nothing is left.
    """
    if version is not None and int(version) <= 0:
        raise ValueError(f"a SavedModel version must be a positive integer, got {version}")
    module = serving_module(generator)
    os.makedirs(base_path, exist_ok=True)
    with exclusive(base_path) as locked:
        if locked:
            remove_temporaries(base_path)
        version = next_version(base_path) if version is None else int(version)
        final = os.path.join(base_path, str(version))
        if os.path.exists(final):
            raise FileExistsError(f"model version {final} exists already")
        _write_version(module, generator.config, final)
    return final


def _write_version(module: tf.Module, config, final: str) -> None:
    def write(temporary: str) -> None:
        tf.saved_model.save(
            module,
            temporary,
            signatures=signatures(module),
        )
        os.makedirs(os.path.join(temporary, "assets.extra"), exist_ok=True)
        with open(os.path.join(temporary, CONFIG_ASSET), "w", encoding="utf-8") as stream:
            stream.write(config.to_json())

    # Written under `.tmp-VERSION-*`, flushed with the umask's modes (not mkdtemp's 0700: a server
    # running as another user must read them), then renamed into place.
    try:
        atomic_directory(final, write)
    except tf.errors.OpError as error:
        raise _write_failure(final, error) from None


def graph_op_types(saved_model_dir: str) -> Dict[str, int]:
    """Every op type in the SavedModel's graphs and function library, with its node count."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as stream:
        proto.ParseFromString(stream.read())
    counts: Dict[str, int] = {}
    for meta_graph in proto.meta_graphs:
        nodes = list(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            nodes.extend(function.node_def)
        for node in nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
    return counts
