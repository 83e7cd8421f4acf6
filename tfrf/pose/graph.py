"""In-graph (pure TensorFlow) pose encoding and photo fitting, for graphs that take what clients
hold: encoded photos and raw poses (the SavedModel signature `photos`, `tfrf.export.photos`).

Everything here is made of core TF ops (no Python at run time, no tensorflow-addons), so it runs
inside a SavedModel under TF-Serving, and it equals what the numpy / eager code of dataset
preparation and the input pipeline computes:

- pose maps: `keypoint_maps` (heatmaps, `tfrf.pose.keypoints.keypoints_to_heatmaps`),
  `view_maps` (`tfrf.pose.views.encode_view`), `camera_maps` (`tfrf.pose.camera.encode_camera`);
  each checks its raw pose's shape in-graph and names the input in the error;
- geometry: `fit_transform`, `transform_keypoints` (float32 arithmetic as numpy does it);
- photos: `pil_resize` computes PIL's `Image.resize` (BICUBIC, BILINEAR) of a uint8 image
  exactly (Pillow 13's separable fixed-point filter and pass order, evaluated in float64 where every
  sum is an exact integer); `fit_photo` is `tfrf.pose.keypoints.fit_image`, `resize_square` the view datasets'
  resize, `crop_face` `tfrf.pose.face.crop_face`;
- `decode_photo`: JPEG or PNG bytes -> uint8 [h, w, 3] (the photo as stored: EXIF orientation is
  not applied, send upright photos).
"""
from __future__ import annotations

import tensorflow as tf

from tfrf.pose import camera as camera_lib
from tfrf.pose import keypoints as keypoints_lib
from tfrf.pose import views as views_lib

# Pose channels -> the `tfrf.pose` encoder a model of that many channels takes.
ENCODER_BY_CHANNELS = {
    keypoints_lib.NUM_KEYPOINTS: "keypoints18",
    views_lib.VIEW_CHANNELS: "view21",
    camera_lib.CAMERA_CHANNELS: "camera6",
    3: "landmarks68",
}
# Raw pose shape (after the leading dims) per encoder; "landmarks68" takes (x, y) landmarks here.
RAW_POSE_SHAPES = {"keypoints18": (keypoints_lib.NUM_KEYPOINTS, 2), "view21": (2,), "camera6": (camera_lib.POSE6_SIZE,),
                   "landmarks68": (68, 2)}
RAW_POSE_FORMS = {"keypoints18": "[18, 2] (y, x) keypoints", "view21": "[2] (azimuth bin, elevation bin)",
                  "camera6": "[6] (tx, ty, tz, rx, ry, rz)", "landmarks68": "[68, 2] (x, y) landmarks"}

_PRECISION_BITS = 22  # PIL's Resample.c: 32 - 8 - 2
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encoder_for_channels(pose_channels: int) -> str:
    """The pose encoder name of a model with `pose_channels` (18, 21, 6 or 3)."""
    if pose_channels not in ENCODER_BY_CHANNELS:
        raise ValueError(f"no pose encoder has {pose_channels} channels; known: {sorted(ENCODER_BY_CHANNELS)}")
    return ENCODER_BY_CHANNELS[pose_channels]


# --- checks ---------------------------------------------------------------------------------

def check_shape(tensor: tf.Tensor, expected, name: str, form: str) -> tf.Tensor:
    """`tensor` after an in-graph check that its shape is `expected` (ints; None: any size):
    InvalidArgumentError "NAME must be FORM, got shape [...]" otherwise."""
    shape = tf.shape(tensor, out_type=tf.int64)
    padded = tf.concat([shape, tf.fill([len(expected)], tf.constant(-1, tf.int64))], 0)[:len(expected)]
    conditions = [tf.equal(tf.size(shape), len(expected))]
    conditions += [tf.equal(padded[i], size) for i, size in enumerate(expected) if size is not None]
    check = tf.debugging.Assert(tf.reduce_all(tf.stack(conditions)), [f"{name} must be {form}, got shape", shape],
                                name=f"check_{name}")
    with tf.control_dependencies([check]):
        static = [size if isinstance(size, int) else None for size in expected]
        return tf.ensure_shape(tf.identity(tensor), static)  # (checked above: this never fails)


def check_finite(tensor: tf.Tensor, name: str) -> tf.Tensor:
    return tf.debugging.assert_all_finite(tensor, f"{name} holds NaN or infinite values")


# --- pose maps --------------------------------------------------------------------------------

def keypoint_maps(keypoints, height: int, width: int, name: str = "keypoints") -> tf.Tensor:
    """Heatmaps [..., H, W, 18] of (y, x) keypoints [..., 18, 2] in H x W pixels (-1: missing);
    equal to `tfrf.pose.keypoints.keypoints_to_heatmaps` (sigma 6 px at 256-px height)."""
    keypoints = check_finite(tf.cast(keypoints, tf.float32), name)
    return keypoints_lib.keypoints_to_heatmaps(keypoints, height, width)


def view_maps(views, height: int, width: int, name: str = "views") -> tf.Tensor:
    """One-hot view maps [..., H, W, 21] of [..., 2] (azimuth bin, elevation bin), bins given as
    whole numbers (float or int); equal to `tfrf.pose.views.encode_view`. Out-of-range or
    fractional bins are an InvalidArgumentError naming `name`."""
    views = tf.convert_to_tensor(views)
    if views.dtype.is_floating:
        views = check_finite(views, name)
        whole = tf.reduce_all(tf.equal(views, tf.round(views)))
        check = tf.debugging.Assert(whole, [f"{name} must hold whole bin numbers"])
        with tf.control_dependencies([check]):
            views = tf.cast(views, tf.int32)
    bins = [views_lib.NUM_AZIMUTH_BINS, views_lib.NUM_ELEVATION_BINS]
    in_range = tf.reduce_all(tf.logical_and(views >= 0, views < bins))
    message = (f"{name} must hold azimuth bins 0..{views_lib.NUM_AZIMUTH_BINS - 1} and "
               f"elevation bins 0..{views_lib.NUM_ELEVATION_BINS - 1}")
    check = tf.debugging.Assert(in_range, [message])
    with tf.control_dependencies([check]):
        return views_lib.encode_view(tf.identity(views), height, width)


def camera_maps(poses, height: int, width: int, name: str = "camera poses") -> tf.Tensor:
    """[..., 6] camera poses broadcast to [..., H, W, 6]; equal to `tfrf.pose.camera.encode_camera`."""
    return camera_lib.encode_camera(check_finite(tf.cast(poses, tf.float32), name), height, width)


# --- geometry ---------------------------------------------------------------------------------

def fit_transform(from_size, to_size, mode: str = "pad") -> tf.Tensor:
    """float64 [4] (scale_y, scale_x, offset_y, offset_x), as `tfrf.pose.keypoints.fit_transform`."""
    from_height, from_width = (tf.cast(v, tf.float64) for v in (from_size[0], from_size[1]))
    to_height, to_width = (tf.cast(v, tf.float64) for v in (to_size[0], to_size[1]))
    if mode == "stretch":
        zero = tf.constant(0.0, tf.float64)
        return tf.stack([to_height / from_height, to_width / from_width, zero, zero])
    if mode == "pad":
        scale = tf.minimum(to_height / from_height, to_width / from_width)
        return tf.stack([scale, scale, (to_height - scale * from_height) / 2.0, (to_width - scale * from_width) / 2.0])
    raise ValueError(f"fit mode must be 'pad' or 'stretch', got {mode!r}")


def transform_keypoints(keypoints, transform) -> tf.Tensor:
    """`tfrf.pose.keypoints.transform_keypoints` in-graph: (y, x) keypoints [..., 18, 2] moved by
    transforms [..., 4] (float32 arithmetic, as numpy does it); missing points stay -1."""
    keypoints = tf.cast(keypoints, tf.float32)
    transform = tf.cast(transform, tf.float32)[..., None, :]  # numpy casts the Python floats to float32
    y = (keypoints[..., 0] + 0.5) * transform[..., 0] - 0.5 + transform[..., 2]
    x = (keypoints[..., 1] + 0.5) * transform[..., 1] - 0.5 + transform[..., 3]
    present = tf.logical_and(keypoints[..., 0] >= 0, keypoints[..., 1] >= 0)
    moved = tf.maximum(tf.stack([y, x], -1), 0.0)
    return tf.where(present[..., None], moved, tf.constant(keypoints_lib.MISSING, tf.float32))


# --- PIL-exact resampling ---------------------------------------------------------------------

def _bicubic(x):
    x = tf.abs(x)
    a = -0.5
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def _bilinear(x):
    x = tf.abs(x)
    return tf.where(x < 1.0, 1.0 - x, tf.zeros_like(x))


_FILTERS = {"bicubic": (2.0, _bicubic), "bilinear": (1.0, _bilinear)}


def _coefficients(in_size, out_size, method: str):
    """PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: (first input index [out] int32,
    integer weights [out, taps] float64 in units of 2^-22)."""
    support, kernel = _FILTERS[method]
    in_float, out_float = tf.cast(in_size, tf.float64), tf.cast(out_size, tf.float64)
    scale = in_float / out_float
    filter_scale = tf.maximum(scale, 1.0)
    support = support * filter_scale
    taps = tf.cast(tf.math.ceil(support), tf.int32) * 2 + 1
    center = (tf.cast(tf.range(out_size), tf.float64) + 0.5) * scale  # [out]
    first = tf.maximum(tf.floor(center - support + 0.5), 0.0)
    last = tf.minimum(tf.floor(center + support + 0.5), in_float)  # exclusive
    index = first[:, None] + tf.cast(tf.range(taps), tf.float64)[None, :]  # [out, taps]
    weights = kernel((index - center[:, None] + 0.5) * (1.0 / filter_scale))
    weights = tf.where(index < last[:, None], weights, tf.zeros_like(weights))
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    empty = tf.equal(total, 0.0)  # (PIL leaves such a row unnormalised)
    weights = tf.where(empty, weights, weights / tf.where(empty, tf.ones_like(total), total))
    unit = float(1 << _PRECISION_BITS)
    weights = tf.where(weights < 0, tf.math.ceil(-0.5 + weights * unit), tf.floor(0.5 + weights * unit))
    return tf.cast(first, tf.int32), weights


def _resample_rows(image, out_size, method: str):
    """One PIL pass along axis 1 of float64 [h, w, c] (integers 0..255) -> [h, out_size, c]."""
    in_size = tf.shape(image)[1]
    first, weights = _coefficients(in_size, out_size, method)

    def body(tap, total):
        columns = tf.minimum(first + tap, in_size - 1)
        return tap + 1, total + tf.gather(image, columns, axis=1) * weights[:, tap][None, :, None]

    start = tf.fill(tf.stack([tf.shape(image)[0], out_size, tf.shape(image)[2]]),
                    tf.constant(float(1 << (_PRECISION_BITS - 1)), tf.float64))
    _, total = tf.while_loop(lambda tap, _: tap < tf.shape(weights)[1], body, (tf.constant(0), start))
    return tf.clip_by_value(tf.floor(total * (1.0 / (1 << _PRECISION_BITS))), 0.0, 255.0)


def pil_resize(image, height, width, method: str = "bicubic") -> tf.Tensor:
    """PIL's `Image.fromarray(image).resize((width, height), BICUBIC | BILINEAR)` of a uint8
    [h, w, c] image, exactly: uint8 [height, width, c].

    Two separable passes with Pillow's integer coefficients. Their order is Pillow 13's: the
    columns (vertical pass) first when the height shrinks by more than twice what the width does
    (`h - height > 2 (w - width)`), else the rows first (Pillow up to 12 always ran the rows
    first: there, such resizes differ by a level or two on some pixels)."""
    if method not in _FILTERS:
        raise ValueError(f"method must be one of {sorted(_FILTERS)}, got {method!r}")
    pixels = tf.cast(image, tf.float64)
    size = tf.shape(image)
    shrink_height, shrink_width = size[0] - height, size[1] - width
    vertical_first = tf.logical_and(shrink_height > 0, shrink_height > 2 * shrink_width)

    def rows(values):
        return _resample_rows(values, width, method)

    def columns(values):
        return tf.transpose(_resample_rows(tf.transpose(values, [1, 0, 2]), height, method), [1, 0, 2])

    pixels = tf.cond(vertical_first, lambda: rows(columns(pixels)), lambda: columns(rows(pixels)))
    return tf.cast(pixels, tf.uint8)


def _place(image, top, left, height: int, width: int, fill: int) -> tf.Tensor:
    """PIL's paste of `image` at (left, top) onto a height x width canvas of `fill` (parts
    outside the canvas are cut off; top and left may be negative)."""
    image = image[tf.maximum(-top, 0):, tf.maximum(-left, 0):]
    top, left = tf.maximum(top, 0), tf.maximum(left, 0)
    image = image[:tf.maximum(height - top, 0), :tf.maximum(width - left, 0)]
    rows, columns = tf.shape(image)[0], tf.shape(image)[1]
    paddings = tf.maximum([[top, height - top - rows], [left, width - left - columns], [0, 0]], 0)
    placed = tf.pad(image, paddings, constant_values=tf.cast(fill, image.dtype))
    return tf.ensure_shape(placed[:height, :width], [height, width, image.shape[-1]])


def fit_photo(image, height: int, width: int, mode: str = "pad", fill: int = 255):
    """`tfrf.pose.keypoints.fit_image` in-graph: (uint8 [H, W, 3], transform float64 [4])."""
    size = tf.shape(image)[:2]
    transform = fit_transform(size, (height, width), mode)
    new_height = tf.maximum(1, tf.cast(tf.round(tf.cast(size[0], tf.float64) * transform[0]), tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.round(tf.cast(size[1], tf.float64) * transform[1]), tf.int32))
    same = tf.logical_and(tf.equal(new_height, size[0]), tf.equal(new_width, size[1]))
    resized = tf.cond(same, lambda: tf.identity(image), lambda: pil_resize(image, new_height, new_width, "bicubic"))
    top = tf.cast(tf.round(transform[2]), tf.int32)
    left = tf.cast(tf.round(transform[3]), tf.int32)
    return _place(resized, top, left, height, width, fill), transform


def resize_square(image, height: int, width: int) -> tf.Tensor:
    """The view datasets' resize (`datasets.view_common.resize_square`): PIL bilinear to H x W
    unless the image has that size already."""
    size = tf.shape(image)[:2]
    same = tf.logical_and(tf.equal(size[0], height), tf.equal(size[1], width))
    resized = tf.cond(same, lambda: tf.identity(image), lambda: pil_resize(image, height, width, "bilinear"))
    return tf.ensure_shape(resized, [height, width, 3])


def face_box(landmarks, margin: float = 0.25):
    """`tfrf.pose.face.face_box` in-graph: (left, top, side) int32 of (x, y) landmarks [68, 2]."""
    landmarks = tf.cast(landmarks, tf.float64)
    low, high = tf.reduce_min(landmarks, axis=0), tf.reduce_max(landmarks, axis=0)
    center = (low + high) / 2.0
    side = tf.maximum(tf.reduce_max(high - low) * (1.0 + 2.0 * margin), 1.0)
    side_pixels = tf.math.ceil(side)
    corner = tf.floor(center - side_pixels / 2.0 + 0.5)
    return tf.cast(corner[0], tf.int32), tf.cast(corner[1], tf.int32), tf.cast(side_pixels, tf.int32)


def crop_face(image, landmarks, size: int, margin: float = 0.25):
    """`tfrf.pose.face.crop_face` in-graph: (uint8 [size, size, 3], landmarks float32 [68, 2] in
    crop pixels). Parts of the box outside the photo are black."""
    left, top, side = face_box(landmarks, margin)
    crop = tf.pad(image[tf.maximum(top, 0):, tf.maximum(left, 0):],  # PIL's crop: black outside the photo
                  [[tf.maximum(-top, 0), side], [tf.maximum(-left, 0), side], [0, 0]])[:side, :side]
    same = tf.equal(side, size)
    crop = tf.cond(same, lambda: tf.identity(crop), lambda: pil_resize(crop, size, size, "bilinear"))
    scale = float(size) / tf.cast(side, tf.float64)
    corner = tf.cast(tf.stack([left, top]), tf.float64)
    moved = (tf.cast(landmarks, tf.float64) - corner + 0.5) * scale - 0.5
    return tf.ensure_shape(crop, [size, size, 3]), tf.cast(moved, tf.float32)


# --- decoding ---------------------------------------------------------------------------------

def is_jpeg_or_png(data) -> tf.Tensor:
    """bool, per element of a string tensor: starts with the JPEG or the PNG signature."""
    return tf.logical_or(tf.equal(tf.strings.substr(data, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC),
                         tf.equal(tf.strings.substr(data, 0, len(_PNG_MAGIC)), _PNG_MAGIC))


def decode_photo(data) -> tf.Tensor:
    """JPEG or PNG bytes (a scalar string) -> uint8 [h, w, 3] (grey photos as RGB, alpha dropped)."""
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])
