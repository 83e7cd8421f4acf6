"""Generating images with a trained generator: photos and poses in, uint8 images out.

What `tfrf generate`, person animation (`tfrf.animation.person`) and `tfrf evaluate`'s
rendering (`tfrf.evaluation.render`) share:

- `load_source`: a photo read upright (`tfrf.photos.read_photo`) and fitted to the model's size
  (`fit`: "pad" keeps the aspect, as the datasets were prepared; "stretch"), with its keypoints
  from a pose JSON or detected with MediaPipe pose, moved by the same transform;
- `load_pose`: a target pose from a pose JSON (`tfrf.pose.keypoints.save_pose_json`) or a photo;
- `build_inputs`: the generator's input dict for one example (images in [-1, 1], heatmaps);
- `generate_image`: one image, uint8; `prediction_function`: batches of a fixed shape, traced once.

A generator comes from `tfrf.runs.load_generator(config, weights)`.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrf.photos import read_photo
from tfrf.pose import keypoint_detection
from tfrf.pose import keypoints as keypoints_lib
from tfrf.visualize import to_uint8

POSE_SUFFIX = ".json"
FIT_MODES = ("pad", "stretch")


def check_keypoint_model(config, what: str = "tfrf generate"):
    """`config` if its model takes 18 keypoint heatmaps, else a ValueError naming it."""
    if config.pose_channels != keypoints_lib.NUM_KEYPOINTS:
        raise ValueError(
            f"{what} needs a keypoint model ({keypoints_lib.NUM_KEYPOINTS} pose channels, e.g. the deepfashion or "
            f"market1501 presets); config {config.name!r} has {config.pose_channels} pose channels"
        )
    return config


def _detect(image: np.ndarray, path: str, threshold: float, confidence: float) -> np.ndarray:
    try:
        return keypoint_detection.extract_keypoints(image, threshold, min_detection_confidence=confidence)
    except keypoint_detection.NoPersonFoundError as error:
        raise keypoint_detection.NoPersonFoundError(f"{path}: {error}") from None


def load_pose(path: str, size: Sequence[int], fit: str = "pad",
              threshold: float = keypoint_detection.DEFAULT_THRESHOLD,
              confidence: float = keypoint_detection.DEFAULT_DETECTION_CONFIDENCE) -> np.ndarray:
    """Keypoints [18, 2] (y, x) in an image of `size` (H, W): from a pose JSON, or detected
    with MediaPipe in a photo (keypoints at least `threshold` visible, the person at least
    `confidence` detected: `PoseDetector`), then fitted as the photo would be."""
    if path.lower().endswith(POSE_SUFFIX):
        keypoints, image_size = keypoints_lib.load_pose_json(path)
    else:
        image = read_photo(path)
        keypoints, image_size = _detect(image, path, threshold, confidence), image.shape[:2]
    return keypoints_lib.rescale_keypoints(keypoints, image_size, size, fit)


def load_source(image_path: str, size: Sequence[int], pose_path: Optional[str] = None,
                fit: str = "pad", threshold: float = keypoint_detection.DEFAULT_THRESHOLD,
                confidence: float = keypoint_detection.DEFAULT_DETECTION_CONFIDENCE) -> Tuple[np.ndarray, np.ndarray]:
    """A source photo fitted to `size`: (uint8 [H, W, 3], keypoints [18, 2] in its pixels);
    detected as `load_pose` detects when no `pose_path` is given."""
    image = read_photo(image_path)
    if pose_path is None:
        keypoints, image_size = _detect(image, image_path, threshold, confidence), image.shape[:2]
    else:
        keypoints, image_size = keypoints_lib.load_pose_json(pose_path)
        if tuple(image_size) != image.shape[:2]:
            raise ValueError(
                f"{pose_path} is a pose in a {image_size[1]}x{image_size[0]} image, but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (w x h)"
            )
    fitted, transform = keypoints_lib.fit_image(image, size, fit)
    return fitted, keypoints_lib.transform_keypoints(keypoints, transform)


def build_inputs(source_images: Sequence[np.ndarray], source_keypoints: Sequence[np.ndarray],
                 target_keypoints: np.ndarray) -> Dict[str, np.ndarray]:
    """The generator's inputs for one example (B = 1): images in [-1, 1], heatmap poses."""
    if not len(source_images) or len(source_images) != len(source_keypoints):
        raise ValueError(
            f"need K >= 1 sources with one pose each, got {len(source_images)} images and {len(source_keypoints)} poses"
        )
    height, width = source_images[0].shape[:2]
    images = np.stack(source_images).astype(np.float32) / 127.5 - 1.0
    poses = keypoints_lib.keypoints_to_heatmaps(np.stack(source_keypoints), height, width).numpy()
    target = keypoints_lib.keypoints_to_heatmaps(target_keypoints, height, width).numpy()
    return {"source_images": images[None], "source_poses": poses[None], "target_pose": target[None]}


def generate_image(generator, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """Runs the generator on one example: uint8 [H, W, 3]."""
    return to_uint8(generator(inputs, training=False)[0].numpy())


def prediction_function(generator, batch_size: int, k: int):
    """`generator(inputs, training=False)` traced for batches of exactly `batch_size` examples of
    K sources: inputs `[B, K, H, W, 3]`, `[B, K, H, W, Cp]`, `[B, H, W, Cp]`.

    Every shape is static: with an unknown batch dimension, TF 2.15's oneDNN remapper aborts the
    process ("libprotobuf FATAL ... key not found") on the ablation baseline's graph, whose
    target-pose branch feeds nothing. Pad a short last batch instead.
    """
    import tensorflow as tf

    config = generator.config
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    signature = {
        "source_images": tf.TensorSpec([batch_size, k, h, w, 3], tf.float32),
        "source_poses": tf.TensorSpec([batch_size, k, h, w, cp], tf.float32),
        "target_pose": tf.TensorSpec([batch_size, h, w, cp], tf.float32),
    }
    return tf.function(lambda inputs: generator(inputs, training=False), input_signature=[signature])
