"""MediaPipe pose on a real photo: keypoints land on the right body parts in the CMU OpenPose-18
channels, EXIF-rotated files give the upright keypoints, Market-sized crops are found.

The photo is scikit-image's `astronaut` (Eileen Collins, head and shoulders, facing the camera;
shipped inside the package, nothing downloaded). Reference positions were read off the 512x512
image by eye: pupils of the right eye (image left) at (y 101, x 206) and the left eye at (104,
246), nose tip at (126, 225), shoulders of the suit near (245, 105) and (255, 315).
"""
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")

from tfrf.pose import keypoint_detection as detection  # noqa: E402
from tfrf.pose import keypoints as kp  # noqa: E402

NAME = {name: index for index, name in enumerate(kp.KEYPOINT_NAMES)}
FACE_AND_SHOULDERS = ["nose", "neck", "right_eye", "left_eye", "right_ear", "left_ear",
                      "right_shoulder", "left_shoulder"]
BY_EYE = {"right_eye": (101, 206), "left_eye": (104, 246), "nose": (126, 225),
          "right_shoulder": (245, 105), "left_shoulder": (255, 315)}
ORIENTATION_TAG = 0x0112


@pytest.fixture(scope="module")
def detector():
    with detection.PoseDetector(static_image_mode=True) as shared:
        yield shared


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def upright_keypoints(astronaut, detector):
    return detection.extract_keypoints(astronaut, detector=detector)


def _points(keypoints, names):
    return np.stack([keypoints[NAME[name]] for name in names])


def test_keypoints_land_on_the_right_face_and_body_parts(upright_keypoints):
    keypoints = upright_keypoints
    assert keypoints.shape == (18, 2) and keypoints.dtype == np.float32
    assert kp.present(keypoints)[[NAME[name] for name in FACE_AND_SHOULDERS]].all()
    y = {name: keypoints[NAME[name], 0] for name in FACE_AND_SHOULDERS}
    x = {name: keypoints[NAME[name], 1] for name in FACE_AND_SHOULDERS}
    # Facing the camera, her right side is on the image's left (CMU channels 14 and 16 right).
    assert x["right_ear"] < x["right_eye"] < x["nose"] < x["left_eye"] < x["left_ear"]
    assert x["right_shoulder"] < x["neck"] < x["left_shoulder"]
    assert max(y["right_eye"], y["left_eye"]) < y["nose"] < y["neck"]
    np.testing.assert_allclose(keypoints[NAME["neck"]], _points(keypoints, ["right_shoulder", "left_shoulder"]).mean(0))
    for name, reference in BY_EYE.items():
        tolerance = 12.0 if "shoulder" not in name else 25.0  # the eyes are 40 px apart
        assert np.linalg.norm(keypoints[NAME[name]] - reference) < tolerance, (name, keypoints[NAME[name]])
    # Her waist is out of the picture: no hips at the default threshold.
    assert not kp.present(keypoints)[[NAME["right_hip"], NAME["left_hip"]]].any()


def test_threshold_decides_which_keypoints_count(astronaut, upright_keypoints):
    with detection.PoseDetector(threshold=0.05) as permissive:
        loose = detection.extract_keypoints(astronaut, detector=permissive)
        landmarks = permissive.landmarks(astronaut)
    strict = kp.present(upright_keypoints)
    assert (kp.present(loose) >= strict).all()  # a lower threshold keeps every point and adds some
    assert kp.present(loose).sum() > strict.sum()
    # The same rule as the mapping, from MediaPipe's raw visibilities (at 0.5 and 0.05).
    inside = (landmarks[:, 0] * 512 - 0.5 >= 0) & (landmarks[:, 0] * 512 - 0.5 <= 511)
    inside &= (landmarks[:, 1] * 512 - 0.5 >= 0) & (landmarks[:, 1] * 512 - 0.5 <= 511)
    for openpose, mediapipe in detection.MEDIAPIPE_INDEX.items():
        assert kp.present(loose)[openpose] == (inside[mediapipe] and landmarks[mediapipe, 3] >= 0.05)
    with pytest.raises(detection.NoPersonFoundError, match="neither shoulders nor hips"):
        detection.extract_keypoints(astronaut, threshold=1.0)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        detection.PoseDetector(threshold=1.5)


@pytest.mark.parametrize("orientation, rotate", [(6, 1), (8, -1)])
def test_exif_rotated_file_gives_the_upright_keypoints(tmp_path, astronaut, detector, orientation, rotate):
    """A camera's portrait: pixel data rotated, the tag saying how to turn it upright."""
    upright_path, rotated_path = tmp_path / "upright.jpg", tmp_path / f"rotated{orientation}.jpg"
    Image.fromarray(astronaut).save(upright_path, quality=95)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, k=rotate))).save(rotated_path, quality=95,
                                                                              exif=exif.tobytes())
    upright = detection.extract_keypoints(str(upright_path), detector=detector)
    rotated = detection.extract_keypoints(str(rotated_path), detector=detector)
    names = FACE_AND_SHOULDERS
    assert kp.present(rotated)[[NAME[name] for name in names]].all()
    # JPEG blocks fall differently on rotated data: a few px apart, not a quarter turn away.
    distances = np.linalg.norm(_points(rotated, names) - _points(upright, names), axis=1)
    assert distances.max() < 8.0, distances
    assert np.median(distances) < 3.0, distances


def test_market_sized_crop_is_found(astronaut, upright_keypoints, detector):
    """A 64x128 crop (Market-1501's size) of the photo: upsampled for detection, keypoints in
    the crop's own pixels, where the full photo's keypoints land after the same crop and scale."""
    left, scale = 50, 4.0  # columns 50..305 (256 x 512), then a quarter of the size
    crop = np.asarray(Image.fromarray(astronaut[:, left:left + 256]).resize((64, 128), Image.BICUBIC))
    keypoints = detection.extract_keypoints(crop, detector=detector)
    face = ["nose", "right_eye", "left_eye", "right_ear", "left_ear"]
    assert kp.present(keypoints)[[NAME[name] for name in face + ["right_shoulder", "left_shoulder"]]].all()
    expected = (_points(upright_keypoints, face) - [0, left] + 0.5) / scale - 0.5
    distances = np.linalg.norm(_points(keypoints, face) - expected, axis=1)
    assert distances.max() < 3.0, distances  # crop pixels (12 px of the full photo)
    # The crop cuts her right shoulder: where the suit's shoulder is becomes a guess, but it
    # stays on her right, left of the nose.
    x = {name: keypoints[NAME[name], 1] for name in ["right_shoulder", "nose", "left_shoulder"]}
    assert x["right_shoulder"] < x["nose"] < x["left_shoulder"]
