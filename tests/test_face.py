"""68-point face module: drawing colours per part, the 68-point check, crops, the encoder,
the MediaPipe index table."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf import pose as pose_lib
from tfrf.pose import face


def test_layout_covers_68_points_in_ibug_parts():
    covered = sorted(i for _, indices in face.part_polylines() for i in set(indices.tolist()))
    assert covered == list(range(68))
    assert {part: [(a, b) for a, b, _ in segments] for part, segments in face.FACE_PARTS.items()} == {
        "jaw": [(0, 16)], "brows": [(17, 21), (22, 26)], "nose": [(27, 30), (31, 35)],
        "eyes": [(36, 41), (42, 47)], "lips": [(48, 59), (60, 67)],
    }
    assert len(set(face.PART_COLORS.values())) == len(face.FACE_PARTS)


@pytest.mark.parametrize("size", [64, 256])
def test_each_part_is_drawn_in_its_colour(size):
    landmarks = face.template_landmarks(size, size)
    drawing = face.draw_landmarks(landmarks, size, size)
    assert drawing.shape == (size, size, 3) and drawing.dtype == np.uint8
    palette = {(0, 0, 0), *face.PART_COLORS.values()}
    assert {tuple(colour) for colour in np.unique(drawing.reshape(-1, 3), axis=0)} == palette
    for part, segments in face.FACE_PARTS.items():
        for first, last, _ in segments:
            for index in range(first, last + 1):
                x, y = np.round(landmarks[index]).astype(int)
                assert tuple(drawing[y, x]) == face.PART_COLORS[part], (part, index)
    # lines join consecutive points: the midpoint of the jaw's first segment is drawn
    x, y = np.round((landmarks[0] + landmarks[1]) / 2).astype(int)
    assert tuple(drawing[y, x]) == face.PART_COLORS["jaw"]
    # and nothing is drawn far from every landmark (the centre of the forehead)
    assert tuple(drawing[int(0.1 * size), size // 2]) == (0, 0, 0)


def test_closed_parts_are_loops_and_open_parts_are_not():
    landmarks = face.template_landmarks(128, 128)
    drawing = face.draw_landmarks(landmarks, 128, 128, line_width=1)

    def around(point):  # the 3x3 pixels around a point
        x, y = np.round(point).astype(int)
        return {tuple(colour) for colour in drawing[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3)}

    assert face.PART_COLORS["eyes"] in around((landmarks[41] + landmarks[36]) / 2)
    assert face.PART_COLORS["lips"] in around((landmarks[59] + landmarks[48]) / 2)
    assert around((landmarks[17] + landmarks[21]) / 2) == {(0, 0, 0)}


@pytest.mark.parametrize("shape", [(67, 2), (68,), (5, 68, 2), (68, 1)])
def test_drawing_needs_68_points(shape):
    with pytest.raises(ValueError, match=r"\[68, 2\].*" + re_shape(shape)):
        face.draw_landmarks(np.zeros(shape), 32, 32)


def re_shape(shape):
    return r"\(" + r",\s*".join(str(s) for s in shape) + r",?\)"


def test_non_finite_landmarks_are_rejected():
    landmarks = face.template_landmarks(32, 32)
    landmarks[3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        face.draw_landmarks(landmarks, 32, 32)


def test_crop_follows_the_landmark_box_and_moves_the_landmarks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    landmarks = face.template_landmarks(40, 40) + [70.0, 30.0]  # box ~ 30 px wide
    left, top, side = face.face_box(landmarks, margin=0.25)
    box = landmarks.max(0) - landmarks.min(0)
    assert side == int(np.ceil(box.max() * 1.5))
    crop, moved = face.crop_face(image, landmarks, size=side, margin=0.25)
    # same size: the crop is the box itself and landmarks just shift
    np.testing.assert_array_equal(crop, image[top:top + side, left:left + side])
    np.testing.assert_allclose(moved, landmarks - [left, top], atol=1e-4)
    # resized: the landmark box keeps its relative place, centred with the margin around it
    crop, moved = face.crop_face(image, landmarks, size=64, margin=0.25)
    assert crop.shape == (64, 64, 3) and moved.dtype == np.float32
    np.testing.assert_allclose((moved.min(0) + moved.max(0)) / 2, [31.5, 31.5], atol=64 / side + 0.5)
    np.testing.assert_allclose((moved.max(0) - moved.min(0)).max(), 64 / 1.5, rtol=0.05)


def test_crop_outside_the_image_is_black():
    image = np.full((50, 50, 3), 200, np.uint8)
    landmarks = face.template_landmarks(40, 40) - 20.0  # the face hangs over the top-left corner
    crop, moved = face.crop_face(image, landmarks, size=32, margin=0.0)
    assert tuple(crop[0, 0]) == (0, 0, 0) and tuple(crop[-1, -1]) == (200, 200, 200)
    assert moved.min() >= -0.5 and moved.max() <= 31.5


def test_landmark_drawing_encoder_scales_and_resizes():
    drawing = face.draw_landmarks(face.template_landmarks(32, 32), 32, 32)
    encode = pose_lib.encoder("landmarks68")
    encoded = encode(drawing, 32, 32).numpy()
    assert encoded.dtype == np.float32 and encoded.shape == (32, 32, 3)
    np.testing.assert_allclose(encoded, drawing / 255.0, atol=1e-7)
    resized = encode(drawing, 16, 16).numpy()
    assert resized.shape == (16, 16, 3) and 0.0 <= resized.min() and resized.max() <= 1.0 + 1e-6
    assert resized.max() > 0.2  # the lines survive the downscale

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def unknown_size(drawing_tensor):
        return encode(drawing_tensor, 16, 16)

    np.testing.assert_allclose(unknown_size(drawing).numpy(), resized, atol=1e-6)
    np.testing.assert_allclose(unknown_size(drawing[::2, ::2]).numpy(), drawing[::2, ::2] / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W, 3\]"):
        encode(np.zeros((8, 8, 4), np.uint8), 8, 8)


def test_mediapipe_table_picks_distinct_vertices_symmetrically():
    table = np.asarray(face.MEDIAPIPE_TO_68)
    assert table.shape == (68,) and len(set(table.tolist())) == 68
    assert table.min() >= 0 and table.max() < face.MEDIAPIPE_MESH_POINTS
    mesh = np.stack([np.arange(468), -np.arange(468), np.zeros(468)], -1).astype(np.float32)
    np.testing.assert_array_equal(face.mediapipe_to_68(mesh)[:, 0], table)
    with pytest.raises(ValueError, match=r"\[468, D\].*\(100, 2\)"):
        face.mediapipe_to_68(np.zeros((100, 2)))


def test_mediapipe_table_follows_the_mesh_contours():
    connections = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")

    def vertices(edges):
        return {index for edge in edges for index in edge}

    table = face.MEDIAPIPE_TO_68
    assert set(table[0:17]) <= vertices(connections.FACEMESH_FACE_OVAL)
    assert set(table[17:22]) <= vertices(connections.FACEMESH_RIGHT_EYEBROW)
    assert set(table[22:27]) <= vertices(connections.FACEMESH_LEFT_EYEBROW)
    assert set(table[36:42]) <= vertices(connections.FACEMESH_RIGHT_EYE)
    assert set(table[42:48]) <= vertices(connections.FACEMESH_LEFT_EYE)
    assert set(table[48:68]) <= vertices(connections.FACEMESH_LIPS)


def test_mediapipe_finds_no_face_in_a_blank_image():
    pytest.importorskip("mediapipe")
    with face.MediaPipeFaceLandmarker() as landmarker:
        assert landmarker(np.zeros((96, 96, 3), np.uint8)) is None
        with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\] RGB"):
            landmarker(np.zeros((96, 96, 3), np.float32))


def test_mediapipe_face_parts_on_a_real_photo(tmp_path):
    """scikit-image's `astronaut` (facing the camera); positions read off the image by eye:
    pupils at (x 206, y 101) (her right eye, image left) and (246, 104), nose tip (225, 126).
    Read from a file with EXIF orientation 6, the landmarks are those of the upright photo."""
    pytest.importorskip("mediapipe")
    astronaut = pytest.importorskip("skimage.data").astronaut()
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter left; viewers turn it 90 degrees clockwise
    path = tmp_path / "portrait.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, k=1))).save(path, exif=exif.tobytes())
    with face.MediaPipeFaceLandmarker() as landmarker:
        landmarks = landmarker(astronaut)
        from_file = landmarker(str(path))
    np.testing.assert_allclose(from_file, landmarks, atol=1e-3)  # the same pixels once upright
    right_eye, left_eye = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    nose_tip, mouth = landmarks[30], landmarks[48:60].mean(0)
    assert np.linalg.norm(right_eye - (206, 101)) < 8 and np.linalg.norm(left_eye - (246, 104)) < 8
    assert np.linalg.norm(nose_tip - (225, 126)) < 10
    assert right_eye[0] < nose_tip[0] < left_eye[0]  # iBUG: the person's right on the image left
    assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1] < landmarks[8, 1]  # chin last
    assert landmarks[0, 0] < right_eye[0] and landmarks[16, 0] > left_eye[0]  # jaw ends outside the eyes
    assert landmarks[17:22, 1].max() < right_eye[1] and landmarks[22:27, 1].max() < left_eye[1]  # brows above
