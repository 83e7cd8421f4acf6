"""The SavedModel signature `photos` (encoded photos and raw poses in, image and coverage out) and
the generator's `coverage`."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfrf.export import export_generator
from tfrf.export.photos import PHOTOS_SIGNATURE, photos_function
from tfrf.export.saved_model import export_saved_model
from tfrf.models import build_generator
from tfrf.pose import encoder as pose_encoder
from tfrf.pose.keypoints import fit_image, transform_keypoints

from helpers import random_inputs, tiny_config

SIZE = 64


def png(image):
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, "PNG")
    return stream.getvalue()


def person_photo(rng, height, width):
    """A photo-like image (smooth gradients) with a random pose in its pixels."""
    y, x = np.mgrid[:height, :width] / max(height, width)
    channels = [np.sin(5 * x * rng.uniform(0.5, 2) + 3 * y * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(3)]
    image = np.clip(np.rint(127.5 + 120 * np.stack(channels, -1)), 0, 255).astype(np.uint8)
    keypoints = (rng.uniform(0.05, 0.95, (18, 2)) * [height - 1, width - 1]).astype(np.float32)
    keypoints[rng.uniform(size=18) < 0.2] = -1
    return image, keypoints


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    generator = export_generator(tiny_config("deepfashion", SIZE))
    path = export_saved_model(generator, str(tmp_path_factory.mktemp("models") / "people"))
    return generator, tf.saved_model.load(path)


def photos_request(rng, batch, sizes):
    photos, poses = [], []
    for _ in range(batch):
        row = [person_photo(rng, *size) for size in sizes]
        photos.append([image for image, _ in row])
        poses.append([keypoints for _, keypoints in row])
    target = (rng.uniform(0.05, 0.95, (batch, 18, 2)) * (SIZE - 1)).astype(np.float32)
    target[:, 3] = -1
    return photos, np.asarray(poses), target


def test_photos_equals_serving_default_on_the_numpy_encoders_maps(exported):
    generator, model = exported
    rng = np.random.default_rng(0)
    # DeepFashion's geometry (raw 256x176 fitted to 256x256, at 1/4), and photos fitted by resampling
    photos, poses, target = photos_request(rng, 2, [(SIZE, 44), (100, 70), (37, 60)])
    out = model.signatures[PHOTOS_SIGNATURE](
        source_images=tf.constant([[png(image) for image in row] for row in photos]),
        source_poses=tf.constant(poses), target_pose=tf.constant(target))
    assert out["image"].dtype == tf.uint8 and out["image"].shape == (2, SIZE, SIZE, 3)
    assert out["coverage"].shape == (2, SIZE, SIZE, 4)

    # The same request the way a client of serving_default prepares it, with numpy / PIL.
    images, maps = [], []
    for row, row_poses in zip(photos, poses):
        decoded = [np.asarray(Image.open(io.BytesIO(png(image))).convert("RGB")) for image in row]
        fitted = [fit_image(image, (SIZE, SIZE)) for image in decoded]
        images.append([image / 127.5 - 1.0 for image, _ in fitted])
        maps.append([pose_encoder("keypoints18")(transform_keypoints(keypoints, transform), SIZE, SIZE).numpy()
                     for (_, transform), keypoints in zip(fitted, row_poses)])
    dense = {"source_images": np.asarray(images, np.float32), "source_poses": np.asarray(maps, np.float32),
             "target_pose": np.stack([pose_encoder("keypoints18")(t, SIZE, SIZE).numpy() for t in target])}
    expected = model.signatures["serving_default"](**{k: tf.constant(v) for k, v in dense.items()})["image"].numpy()
    scaled = (expected + 1.0) * 127.5  # serving_uint8's rounding of the same image
    assert np.abs(out["image"].numpy() - scaled).max() <= 0.5 + 1e-4 * 127.5
    coverage = generator(dense, training=False, return_intermediates=True)["coverage"].numpy()
    np.testing.assert_allclose(out["coverage"].numpy(), coverage, atol=1e-4, rtol=0)


def test_coverage_shares_are_in_0_1_and_sum_to_1(exported):
    _, model = exported
    rng = np.random.default_rng(1)
    photos, poses, target = photos_request(rng, 1, [(80, 50), (64, 64), (30, 90)])  # fitted in the graph
    out = model.signatures[PHOTOS_SIGNATURE](
        source_images=tf.constant([[png(image) for image in row] for row in photos]),
        source_poses=tf.constant(poses), target_pose=tf.constant(target))
    coverage = out["coverage"].numpy()
    assert coverage.shape == (1, SIZE, SIZE, 4)
    assert coverage.min() >= 0.0 and coverage.max() <= 1.0
    np.testing.assert_allclose(coverage.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("architecture, sources", [("rf", 3), ("gfla", 1)])
def test_generator_coverage(architecture, sources):
    config = tiny_config("deepfashion", SIZE, architecture=architecture)
    generator = build_generator(config)
    out = generator(random_inputs(config, batch=2, sources=sources), return_intermediates=True)
    coverage = out["coverage"].numpy()
    assert coverage.shape == (2, SIZE, SIZE, sources + 1)
    assert coverage.min() >= 0.0 and coverage.max() <= 1.0
    np.testing.assert_allclose(coverage.sum(-1), 1.0, atol=1e-5)
    finest = out[generator.levels[-1]]  # H/4: source k's share a_k (1 - m_k), upsampled
    attention = finest["attention"] if architecture == "rf" else tf.ones_like(finest["occlusions"])
    shares = tf.transpose((attention * (1.0 - finest["occlusions"]))[..., 0], [0, 2, 3, 1])
    np.testing.assert_allclose(coverage[..., :sources], tf.image.resize(shares, (SIZE, SIZE)).numpy(), atol=1e-5)


def test_a_source_without_attention_gets_no_coverage(monkeypatch):
    config = tiny_config("deepfashion", SIZE)
    generator = build_generator(config)
    inputs = random_inputs(config, batch=1, sources=3)
    extract_flows = generator.extract_flows

    def without_source_1(inputs):
        outputs = extract_flows(inputs)
        for level in outputs.values():
            logits = level["attention_logit"]
            level["attention_logit"] = tf.concat([logits[:, :1], logits[:, 1:2] - 1e4, logits[:, 2:]], axis=1)
        return outputs

    monkeypatch.setattr(generator, "extract_flows", without_source_1)
    coverage = generator(inputs, return_intermediates=True)["coverage"].numpy()
    assert np.abs(coverage[..., 1]).max() == 0.0
    assert coverage[..., [0, 2]].min() > 0.0  # the others still contribute
    np.testing.assert_allclose(coverage.sum(-1), 1.0, atol=1e-5)


def test_bad_requests_name_the_input(exported):
    _, model = exported
    photos = model.signatures[PHOTOS_SIGNATURE]
    rng = np.random.default_rng(2)
    image, keypoints = person_photo(rng, SIZE, 44)
    good = {"source_images": tf.constant([[png(image)]]), "source_poses": tf.constant(keypoints[None, None]),
            "target_pose": tf.constant(keypoints[None])}
    assert photos(**good)["image"].shape == (1, SIZE, SIZE, 3)
    cases = [
        ({"source_images": tf.constant([[b"not a photo"]])}, "source_images must be encoded JPEG or PNG"),
        ({"source_images": tf.constant([[png(image)[:40]]])}, None),  # a truncated PNG: the decoder's own error
        ({"source_images": tf.zeros([1, 0], tf.string), "source_poses": tf.zeros([1, 0, 18, 2])},
         "source_images must hold K >= 1"),
        ({"source_poses": tf.zeros([1, 1, 17, 2])}, r"source_poses must be \[B, K, 18, 2\]"),
        ({"source_poses": tf.zeros([1, 2, 18, 2])}, r"source_poses must be \[B, K, 18, 2\]"),
        ({"target_pose": tf.zeros([1, 18, 3])}, r"target_pose must be \[B, 18, 2\]"),
        ({"target_pose": tf.zeros([2, 18, 2])}, r"target_pose must be \[B, 18, 2\]"),
        ({"target_pose": tf.fill([1, 18, 2], np.nan)}, "target_pose holds NaN"),
    ]
    for change, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            photos(**{**good, **change})


def test_view_models_take_their_bins():
    config = tiny_config("synthetic", SIZE)
    generator = export_generator(config)
    photos = photos_function(generator, config)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2)]
    views = np.array([[[3, 1], [10, 0]]], np.float32)
    target = np.array([[7, 2]], np.float32)
    out = photos(tf.constant([[png(image) for image in images]]), tf.constant(views), tf.constant(target))
    dense = {"source_images": np.asarray([images], np.float32) / 127.5 - 1.0,
             "source_poses": pose_encoder("view21")(views.astype(np.int64), SIZE, SIZE).numpy(),
             "target_pose": pose_encoder("view21")(target.astype(np.int64), SIZE, SIZE).numpy()}
    expected = generator(dense, training=False, return_intermediates=True)
    assert np.abs(out["image"].numpy() - (expected["image"].numpy() + 1.0) * 127.5).max() <= 0.5 + 1e-4 * 127.5
    np.testing.assert_allclose(out["coverage"].numpy(), expected["coverage"].numpy(), atol=1e-4, rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_poses"):
        photos(tf.constant([[png(images[0])]]), tf.constant([[[18.0, 0.0]]]), tf.constant(target))


def test_face_models_take_landmarks():
    from tfrf.pose import face as face_lib

    config = tiny_config("voxceleb2", SIZE)
    generator = export_generator(config)
    photos = photos_function(generator, config)
    rng = np.random.default_rng(4)
    images, landmarks, crops, drawings = [], [], [], []
    for index in range(2):
        image = person_photo(rng, 90, 120)[0]
        points = face_lib.template_landmarks(60, 60)
        points = (points - points.min(0)) * (42.6 / np.ptp(points, axis=0).max()) + [30 + 5 * index, 20]
        crop, moved = face_lib.crop_face(image, points, SIZE)  # a 64-px box: cropped, not resampled
        images.append(png(image))
        landmarks.append(points.astype(np.float32))
        crops.append(crop)
        drawings.append(face_lib.draw_landmarks(moved, SIZE, SIZE) / 255.0)
    target = face_lib.template_landmarks(SIZE, SIZE)[None]
    out = photos(tf.constant([images]), tf.constant(np.asarray([landmarks])), tf.constant(target))
    dense = {"source_images": np.asarray([crops], np.float32) / 127.5 - 1.0,
             "source_poses": np.asarray([drawings], np.float32),
             "target_pose": (face_lib.draw_landmarks(target[0], SIZE, SIZE) / 255.0)[None].astype(np.float32)}
    expected = generator(dense, training=False, return_intermediates=True)
    assert np.abs(out["image"].numpy() - (expected["image"].numpy() + 1.0) * 127.5).max() <= 0.5 + 1e-4 * 127.5
    np.testing.assert_allclose(out["coverage"].numpy(), expected["coverage"].numpy(), atol=1e-4, rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"source_poses must be \[B, K, 68, 2\]"):
        photos(tf.constant([images]), tf.zeros([1, 2, 18, 2]), tf.constant(target))
