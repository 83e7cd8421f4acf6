"""OpenPose-18 keypoints: CSV parsing, geometry, Gaussian heatmaps, drawings, MediaPipe mapping."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tfrf import pose as pose_lib
from tfrf.pose import keypoint_detection as detection
from tfrf.pose import keypoints as kp


def _pose(points):
    """[18, 2] keypoints, all missing except `points` {index: (y, x)}."""
    keypoints = np.full((18, 2), -1.0, np.float32)
    for index, yx in points.items():
        keypoints[index] = yx
    return keypoints


def test_csv_round_trip(tmp_path):
    path = tmp_path / "fasion-annotation-test.csv"
    path.write_text(
        "name:keypoints_y:keypoints_x\n"
        "a.jpg: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, -1, 18]:"
        " [21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, -1]\n"
        "\n"
        "b.jpg:[-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1]:[-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1]\n"
    )
    annotations = kp.read_keypoint_csv(str(path))
    assert list(annotations) == ["a.jpg", "b.jpg"]
    a = annotations["a.jpg"]
    assert a.shape == (18, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a[0], [1, 21])
    np.testing.assert_array_equal(a[16], [-1, -1])  # y missing -> the point is missing
    np.testing.assert_array_equal(a[17], [-1, -1])  # x missing -> the point is missing
    assert not kp.present(annotations["b.jpg"]).any()
    copy = tmp_path / "copy.csv"
    kp.write_keypoint_csv(str(copy), annotations)
    again = kp.read_keypoint_csv(str(copy))
    for name in annotations:
        np.testing.assert_array_equal(again[name], annotations[name])


@pytest.mark.parametrize("row, message", [
    ("a.jpg: [1, 2]: [3, 4]", "list of 18 integers"),
    ("a.jpg: [1, 2, 3", "3 ':'-separated fields"),
    ("a.jpg: " + str([1] * 18) + ": not-json", "keypoints_x is not a JSON list"),
    ("a.jpg: " + str([1.5] * 18) + ": " + str([1] * 18), "keypoints_y must be a list of 18 integers"),
])
def test_malformed_csv_row_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "market-annotation-train.csv"
    good = "ok.jpg: " + str([1] * 18) + ": " + str([2] * 18)
    path.write_text(f"name:keypoints_y:keypoints_x\n{good}\n{row}\n")
    with pytest.raises(ValueError, match=rf"market-annotation-train\.csv:3: .*{message}"):
        kp.read_keypoint_csv(str(path))


def test_csv_header_and_duplicates_are_checked(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,keypoints\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: expected the header"):
        kp.read_keypoint_csv(str(path))
    row = "a.jpg: " + str([1] * 18) + ": " + str([2] * 18)
    path.write_text(f"name:keypoints_y:keypoints_x\n{row}\n{row}\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: image 'a.jpg' is annotated twice"):
        kp.read_keypoint_csv(str(path))


def test_rescale_stretch_and_pad():
    keypoints = _pose({0: (0, 0), 1: (255, 175), 2: (100, 50)})
    stretched = kp.rescale_keypoints(keypoints, (256, 176), (128, 88), "stretch")
    np.testing.assert_allclose(stretched[:3], [[0, 0], [127.25, 87.25], [49.75, 24.75]])  # -0.25 kept at 0
    padded = kp.rescale_keypoints(keypoints, (256, 176), (256, 256), "pad")  # 40 px white each side
    np.testing.assert_allclose(padded[:3], [[0, 40], [255, 215], [100, 90]])
    half = kp.rescale_keypoints(keypoints, (256, 176), (128, 128), "pad")
    np.testing.assert_allclose(half[2], [49.75, 44.75])
    assert (padded[3:] == -1).all() and (half[3:] == -1).all()


def test_fit_image_pads_and_keypoints_follow():
    image = np.zeros((256, 176, 3), np.uint8)
    image[100, 50] = 255
    fitted, transform = kp.fit_image(image, (256, 256), "pad", fill=7)
    assert fitted.shape == (256, 256, 3)
    assert (fitted[:, :40] == 7).all() and (fitted[:, 216:] == 7).all()
    moved = kp.transform_keypoints(_pose({0: (100, 50)}), transform)
    y, x = moved[0].astype(int)
    assert fitted[y, x].tolist() == [255, 255, 255]


def test_heatmap_peaks_at_keypoints_and_missing_channels_are_zero():
    keypoints = _pose({0: (10, 20), 5: (63, 0), 17: (31, 47)})
    heatmaps = kp.keypoints_to_heatmaps(keypoints, 64, 48).numpy()
    assert heatmaps.shape == (64, 48, 18) and heatmaps.dtype == np.float32
    for index, yx in {0: (10, 20), 5: (63, 0), 17: (31, 47)}.items():
        assert np.unravel_index(heatmaps[..., index].argmax(), (64, 48)) == yx
        assert heatmaps[yx[0], yx[1], index] == pytest.approx(1.0)
    missing = [i for i in range(18) if i not in (0, 5, 17)]
    assert not heatmaps[..., missing].any()
    sigma = 6.0 * 64 / 256  # 6 px at 256-px height, scaled
    assert heatmaps[10, 20 + 2, 0] == pytest.approx(np.exp(-4 / (2 * sigma**2)), rel=1e-5)
    assert heatmaps[10 + 1, 20 + 1, 0] == pytest.approx(np.exp(-2 / (2 * sigma**2)), rel=1e-5)


def test_heatmaps_of_rescaled_keypoints_and_batches():
    keypoints = _pose({1: (128, 88)})
    small = kp.rescale_keypoints(keypoints, (256, 176), (64, 64), "pad")
    heatmaps = kp.keypoints_to_heatmaps(np.stack([keypoints, small]), 64, 64).numpy()
    assert heatmaps.shape == (2, 64, 64, 18)
    peak = np.unravel_index(heatmaps[1, ..., 1].argmax(), (64, 64))
    np.testing.assert_allclose(peak, np.rint(small[1]), atol=0)
    with pytest.raises(ValueError, match=r"\[\.\.\., 18, 2\]"):
        kp.keypoints_to_heatmaps(np.zeros((17, 2)), 8, 8)


def test_registry_encoder_is_the_heatmap():
    encode = pose_lib.encoder("keypoints18")
    keypoints = _pose({3: (5, 6)})
    np.testing.assert_allclose(encode(keypoints, 32, 16), kp.keypoints_to_heatmaps(keypoints, 32, 16))
    graph = tf.function(lambda raw: encode(raw, 32, 16))
    assert graph(tf.constant(keypoints)).shape == (32, 16, 18)
    assert pose_lib.encoder_channels("keypoints18") == 18


def test_draw_skeleton_colours_limbs_and_joints():
    keypoints = _pose({1: (10, 10), 2: (10, 30), 8: (40, 20)})  # neck, right shoulder, right hip
    drawing = kp.draw_skeleton(keypoints, 64, 48, thickness=2)
    assert drawing.shape == (64, 48, 3) and drawing.dtype == np.uint8
    assert drawing[10, 20].tolist() == list(kp.COLOURS[0])  # neck - right shoulder, limb 0
    assert drawing[40, 20].any()  # the hip joint
    assert not drawing[60, 5].any()  # background stays black
    over = kp.draw_skeleton(_pose({}), 8, 8, image=np.full((8, 8, 3), 9, np.uint8))
    assert (over == 9).all()


def test_draw_skeleton_face_limbs_follow_openpose():
    """OpenPose's limb colours: 13 nose-right eye, 14 right eye-right ear, 15 nose-left eye,
    16 left eye-left ear; joint i in colour i."""
    keypoints = _pose({0: (40, 40), 14: (20, 20), 15: (20, 60), 16: (20, 4), 17: (20, 76)})
    drawing = kp.draw_skeleton(keypoints, 64, 80, thickness=1)
    assert kp.LIMBS[13:17] == ((0, 14), (14, 16), (0, 15), (15, 17))
    assert drawing[30, 30].tolist() == list(kp.COLOURS[13])  # halfway nose -> right eye
    assert drawing[20, 12].tolist() == list(kp.COLOURS[14])  # halfway right eye -> right ear
    assert drawing[30, 50].tolist() == list(kp.COLOURS[15])
    assert drawing[20, 68].tolist() == list(kp.COLOURS[16])
    assert drawing[20, 20].tolist() == list(kp.COLOURS[14])  # the right-eye joint


def test_stick_figure_faces_the_camera():
    """The dummy-data figure's right side is on the image's left (smaller x)."""
    from tfrf.datasets import people_common

    _, keypoints = people_common.stick_figure(np.random.default_rng(0), 256, 176)
    name = {n: i for i, n in enumerate(kp.KEYPOINT_NAMES)}
    for part in ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        assert keypoints[name[f"right_{part}"], 1] < keypoints[name[f"left_{part}"], 1], part
    assert keypoints[name["right_eye"], 0] < keypoints[name["nose"], 0]  # eyes above the nose


def test_shoulders_and_hips():
    assert kp.shoulders_and_hips(_pose({2: (1, 1), 11: (1, 1)})) == (True, True)
    assert kp.shoulders_and_hips(_pose({5: (1, 1)})) == (True, False)
    assert kp.shoulders_and_hips(_pose({8: (1, 1)})) == (False, True)


def _landmarks():
    """Synthetic MediaPipe output: landmark i at x = (i + 1) / 40, y = (i + 1) / 50."""
    landmarks = np.zeros((33, 4), np.float32)
    landmarks[:, 0] = (np.arange(33) + 1) / 40.0
    landmarks[:, 1] = (np.arange(33) + 1) / 50.0
    landmarks[:, 3] = 0.9
    return landmarks


def test_keypoint_names_are_the_cmu_openpose_order():
    """docs/conventions.md: the order of the published annotation CSVs (eyes and ears: right first)."""
    assert kp.KEYPOINT_NAMES == (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
    )


def test_mediapipe_mapping_to_openpose18():
    landmarks = _landmarks()
    keypoints = detection.mediapipe_to_openpose(landmarks, height=100, width=80)
    # MediaPipe pose landmarks: 0 nose, 2 left eye, 5 right eye, 7 left ear, 8 right ear,
    # 11/12 left/right shoulder, 13/14 elbows, 15/16 wrists, 23/24 hips, 25/26 knees, 27/28 ankles.
    expected_source = {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28,
                       11: 23, 12: 25, 13: 27, 14: 5, 15: 2, 16: 8, 17: 7}
    for openpose, mediapipe in expected_source.items():
        np.testing.assert_allclose(
            keypoints[openpose], [landmarks[mediapipe, 1] * 100 - 0.5, landmarks[mediapipe, 0] * 80 - 0.5], rtol=1e-6
        )
    np.testing.assert_allclose(keypoints[1], (keypoints[2] + keypoints[5]) / 2)  # neck = mid-shoulders


def test_keypoint_threshold_is_the_visibility_cut():
    landmarks = _landmarks()
    landmarks[:, 3] = np.linspace(0.0, 1.0, 33)  # landmark i has visibility i / 32
    for threshold in (0.3, 0.7):
        keypoints = detection.mediapipe_to_openpose(landmarks, height=100, width=80, threshold=threshold)
        for openpose, mediapipe in detection.MEDIAPIPE_INDEX.items():
            assert kp.present(keypoints)[openpose] == (mediapipe / 32 >= threshold), (openpose, threshold)


def test_mediapipe_mapping_drops_invisible_and_outside_points():
    landmarks = _landmarks()
    landmarks[12, 3] = 0.1  # right shoulder barely visible
    landmarks[0, 0] = 1.3  # nose outside the image
    keypoints = detection.mediapipe_to_openpose(landmarks, height=100, width=80)
    assert (keypoints[2] == -1).all() and (keypoints[0] == -1).all()
    assert (keypoints[1] == -1).all()  # no neck without both shoulders
    assert (keypoints[5] >= 0).all()
    with pytest.raises(ValueError, match=r"\[33, 4\]"):
        detection.mediapipe_to_openpose(np.zeros((17, 4)), 10, 10)


def test_small_images_are_upsampled_for_detection_and_coordinates_map_back():
    small = np.zeros((128, 64, 3), np.uint8)
    small[40:44, 20:24] = 255  # a 4x4 block centred on pixel (41.5, 21.5)
    large = detection.upsample_for_detection(small, 256)
    assert large.shape == (512, 256, 3)  # short side 64 -> 256, aspect kept
    rows, columns = np.nonzero(large[..., 0] > 127)
    # Pixel centres scale as (p + 0.5) * 4 - 0.5: the block's centre moves to (167.5, 87.5).
    assert (rows.mean(), columns.mean()) == pytest.approx((167.5, 87.5), abs=0.5)
    assert detection.upsample_for_detection(large, 256) is large  # already large enough
    # MediaPipe reports coordinates normalised by the image it saw; normalised by the small
    # image's size they are that image's pixels: x_small = x_norm * 64 - 0.5.
    landmarks = _landmarks()
    landmarks[0, :2] = ((87.5 + 0.5) / 256, (167.5 + 0.5) / 512)  # the nose on the block, in `large`
    keypoints = detection.mediapipe_to_openpose(landmarks, 128, 64)
    np.testing.assert_allclose(keypoints[0], (41.5, 21.5), atol=1e-5)


def test_extract_keypoints_finds_no_person_in_a_blank_image(tmp_path):
    pytest.importorskip("mediapipe")
    with pytest.raises(kp.NoPersonFoundError, match="no person found"):
        detection.extract_keypoints(np.full((256, 176, 3), 255, np.uint8))
    from PIL import Image

    Image.new("RGB", (64, 128), (255, 255, 255)).save(tmp_path / "empty.png")
    with pytest.raises(kp.NoPersonFoundError, match=r"empty\.png: no person found"):
        pose_lib.extract_keypoints(str(tmp_path / "empty.png"))
    with pytest.raises(ValueError, match="uint8"):
        detection.extract_keypoints(np.zeros((8, 8), np.float32))
    with pytest.raises(FileNotFoundError, match=r"nobody\.jpg does not exist"):
        detection.extract_keypoints(str(tmp_path / "nobody.jpg"))


def test_pose_json_round_trip_and_errors(tmp_path):
    keypoints = _pose({0: (10.5, 20.25), 1: (30, 40)})
    path = tmp_path / "pose.json"
    kp.save_pose_json(str(path), keypoints, (256, 176))
    loaded, image_size = kp.load_pose_json(str(path))
    np.testing.assert_allclose(loaded, keypoints)
    assert image_size == (256, 176)
    path.write_text(json.dumps({"keypoints": [[1, 2]] * 17, "image_size": [8, 8]}))
    with pytest.raises(ValueError, match=r"pose\.json: keypoints must be 18 \[y, x\] pairs"):
        kp.load_pose_json(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"pose\.json: expected"):
        kp.load_pose_json(str(path))
