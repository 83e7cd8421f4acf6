"""The SavedModel signature `photos`: encoded photos and raw poses in, an image and a coverage
map out, so that a client holds no tfrf preprocessing.

| input | dtype, shape | content |
|---|---|---|
| `source_images` | string `[B, K]` | encoded JPEG or PNG photos, any size |
| `source_poses` | float32 `[B, K, ...]` | each source's raw pose, in that photo's pixels |
| `target_pose` | float32 `[B, ...]` | the raw target pose, in output pixels |

Raw poses by the model's pose encoder (its `pose_channels`): keypoints `[18, 2]` (y, x), -1
missing (18 channels); views `[2]` (azimuth bin, elevation bin) (21); camera `[6]` (6); face
landmarks `[68, 2]` (x, y) (3, when `tfrf.pose.face_graph` is there to draw them).

Outputs: `image` uint8 `[B, H, W, 3]` (as `serving_uint8` rounds it) and `coverage` float32
`[B, H, W, K + 1]` (`tfrf.models.generator.upsampled_coverage`: per pixel the share of each
source and, last, the decoder's own).

In the graph each photo is decoded and fitted to H x W as the dataset preparation fits it
(`tfrf.pose.graph`: people photos scaled uniformly with PIL's bicubic filter and centred on white,
view photos resized bilinearly, faces cropped around their landmarks), its pose moved by the same
transform, and the pose maps are drawn by the in-graph encoders. A bad request is an
INVALID_ARGUMENT error naming the input: bytes that are not a JPEG or PNG, K = 0, a pose of the
wrong shape, B or K differing between the inputs, NaN coordinates, view bins out of range.
"""
from __future__ import annotations

import importlib.util

import tensorflow as tf

from tfrf.pose import graph as pose_graph

PHOTOS_SIGNATURE = "photos"
FACE_MARGIN = 0.25  # the VoxCeleb2 builder's default crop margin
PEOPLE_FIT, PEOPLE_FILL = "pad", 255  # the DeepFashion / Market builders' defaults


def face_drawing_available() -> bool:
    """Whether the in-graph landmark drawing (`tfrf.pose.face_graph`) is installed."""
    return importlib.util.find_spec("tfrf.pose.face_graph") is not None


def photos_supported(config) -> bool:
    """Whether a `photos` signature can be built for `config` (face models need
    `tfrf.pose.face_graph`)."""
    encoder = pose_graph.ENCODER_BY_CHANNELS.get(config.pose_channels)
    return encoder is not None and (encoder != "landmarks68" or face_drawing_available())


def input_specs(config):
    """The `photos` input signature of `config`: leading B (and K) and the raw pose's rank fixed,
    its sizes checked in the graph (so that a wrong size is an error naming the input)."""
    encoder = pose_graph.encoder_for_channels(config.pose_channels)
    rank = len(pose_graph.RAW_POSE_SHAPES[encoder])
    return [
        tf.TensorSpec([None, None], tf.string, name="source_images"),
        tf.TensorSpec([None, None] + [None] * rank, tf.float32, name="source_poses"),
        tf.TensorSpec([None] + [None] * rank, tf.float32, name="target_pose"),
    ]


def _draw_landmarks(landmarks, height: int, width: int) -> tf.Tensor:
    from tfrf.pose import face_graph

    return face_graph.draw_landmarks_graph(landmarks, height, width)


def pose_maps(encoder: str, raw_poses, height: int, width: int, name: str) -> tf.Tensor:
    """Pose maps [..., H, W, Cp] of raw poses [..., *RAW_POSE_SHAPES[encoder]] in H x W pixels."""
    if encoder == "keypoints18":
        return pose_graph.keypoint_maps(raw_poses, height, width, name)
    if encoder == "view21":
        return pose_graph.view_maps(raw_poses, height, width, name)
    if encoder == "camera6":
        return pose_graph.camera_maps(raw_poses, height, width, name)
    return _draw_landmarks(pose_graph.check_finite(raw_poses, name), height, width)


def _fit(encoder: str, image, pose, height: int, width: int):
    """One decoded photo and its raw pose -> (uint8 [H, W, 3], the pose in the fitted photo)."""
    if encoder == "keypoints18":
        fitted, transform = pose_graph.fit_photo(image, height, width, PEOPLE_FIT, PEOPLE_FILL)
        return fitted, pose_graph.transform_keypoints(pose, transform)
    if encoder == "landmarks68":
        fitted, moved = pose_graph.crop_face(image, pose_graph.check_finite(pose, "source_poses"), height, FACE_MARGIN)
        return fitted, moved
    return pose_graph.resize_square(image, height, width), pose


def checked_inputs(encoder: str, source_images, source_poses, target_pose):
    """The three inputs after in-graph checks (InvalidArgumentError naming the input)."""
    raw_shape = pose_graph.RAW_POSE_SHAPES[encoder]
    form = pose_graph.RAW_POSE_FORMS[encoder]
    images = tf.shape(source_images, out_type=tf.int64)
    batch, sources = images[0], images[1]
    checks = [tf.debugging.assert_greater(sources, tf.constant(0, tf.int64),
                                          message="source_images must hold K >= 1 photos: [B, K] encoded JPEG or PNG")]
    encoded = tf.reshape(source_images, [-1])
    valid = pose_graph.is_jpeg_or_png(encoded)
    checks.append(tf.debugging.Assert(
        tf.reduce_all(valid),
        ["source_images must be encoded JPEG or PNG photos; not one at flat index (b * K + k):",
         tf.where(~valid)[:, 0]],
        name="check_source_images"))
    with tf.control_dependencies(checks):
        source_poses = pose_graph.check_shape(source_poses, [batch, sources, *raw_shape], "source_poses",
                                              f"[B, K, {', '.join(map(str, raw_shape))}] ({form} of each photo, "
                                              "B and K as in source_images)")
        target_pose = pose_graph.check_shape(target_pose, [batch, *raw_shape], "target_pose",
                                             f"[B, {', '.join(map(str, raw_shape))}] ({form} in output pixels, "
                                             "B as in source_images)")
        return tf.identity(source_images), source_poses, target_pose


def photos_function(generator, config):
    """The `photos` `tf.function` (with its input signature) of a built generator."""
    encoder = pose_graph.encoder_for_channels(config.pose_channels)
    height, width = config.image_height, config.image_width
    raw_shape = list(pose_graph.RAW_POSE_SHAPES[encoder])
    if encoder == "landmarks68" and height != width:
        raise ValueError(f"face crops are square; the photos signature needs H == W, got {height}x{width}")

    # Plain TF ops without Python control flow on tensors: nothing for autograph to convert.
    @tf.autograph.experimental.do_not_convert
    def prepare(source_images, source_poses, target_pose):
        """The generator's dense inputs: photos fitted and scaled to [-1, 1], pose maps."""
        source_images, source_poses, target_pose = checked_inputs(encoder, source_images, source_poses, target_pose)
        batch_and_sources = tf.shape(source_images)
        encoded = tf.reshape(source_images, [-1])
        poses = tf.reshape(source_poses, [-1] + raw_shape)

        def fit_one(example):
            return _fit(encoder, pose_graph.decode_photo(example[0]), example[1], height, width)

        fitted, moved = tf.map_fn(
            fit_one, (encoded, poses),
            fn_output_signature=(tf.TensorSpec([height, width, 3], tf.uint8), tf.TensorSpec(raw_shape, tf.float32)))
        images = tf.cast(fitted, tf.float32) / 127.5 - 1.0
        source_maps = pose_maps(encoder, moved, height, width, "source_poses")
        unfold = tf.concat([batch_and_sources, [height, width, -1]], 0)
        channels = config.pose_channels
        # Static H, W and C, as serving_default's placeholders have them (the graph is optimised for them).
        return {
            "source_images": tf.ensure_shape(tf.reshape(images, unfold), [None, None, height, width, 3]),
            "source_poses": tf.ensure_shape(tf.reshape(source_maps, unfold), [None, None, height, width, channels]),
            "target_pose": tf.ensure_shape(pose_maps(encoder, target_pose, height, width, "target_pose"),
                                           [None, height, width, channels]),
        }

    @tf.function(input_signature=input_specs(config))
    def photos(source_images, source_poses, target_pose):
        inputs = prepare(source_images, source_poses, target_pose)
        outputs = generator(inputs, training=False, return_intermediates=True)
        image = tf.clip_by_value(tf.round((outputs["image"] + 1.0) * 127.5), 0.0, 255.0)
        return {"image": tf.cast(image, tf.uint8), "coverage": tf.cast(outputs["coverage"], tf.float32)}

    return photos
