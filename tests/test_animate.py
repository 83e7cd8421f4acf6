"""Face animation: `tfrf animate` on a synthetic driving landmark sequence writes a playable
file with the right frame count; the Python API's frames are the model's renders."""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfrf
from tfrf import animate as animate_lib
from tfrf.cli import main as cli_main
from tfrf.export import build_generator
from tfrf.export.tflite import convert
from tfrf.pose import face

SIZE = 64  # model crop size
PHOTO = 96  # source photo size
K = 2
FRAMES = 6


def driving_sequence():
    """A mouth opening in a 128x128 driving video, with frame 3 faceless (NaN)."""
    base = face.template_landmarks(128, 128).astype(np.float64)
    frames = []
    for step, opening in enumerate((0.0, 2.0, 4.0, 6.0, 8.0, 10.0)):
        points = base.copy()
        points[57:60, 1] += opening  # lower outer lip
        points[64:67, 1] += opening / 2  # lower inner lip
        points += [2.0 * step, 0.0]  # the head drifts right; the per-frame crop follows it
        frames.append(points)
    frames = np.stack(frames)
    frames[3] = np.nan
    return frames


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tf.keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("animate")
    config = tfrf.ModelConfig.preset("voxceleb2", image_height=SIZE, image_width=SIZE, width_multiplier=0.125)
    model = str(root / "face.tflite")
    with open(model, "wb") as stream:
        stream.write(convert(build_generator(config, tflite=True), K))
    rng = np.random.default_rng(0)
    sources, landmark_files, landmarks = [], [], []
    for index in range(K):
        points = face.template_landmarks(PHOTO - 16, PHOTO - 16) + 8 + index  # a face inside the photo
        photo = (rng.uniform(0, 255, (PHOTO, PHOTO, 3)) * 0.3 + 80).astype(np.uint8)
        photo = np.maximum(photo, face.draw_landmarks(points, PHOTO, PHOTO))
        path, points_path = str(root / f"s{index}.png"), str(root / f"s{index}.npy")
        Image.fromarray(photo).save(path)
        np.save(points_path, points)
        sources.append(path)
        landmark_files.append(points_path)
        landmarks.append(points)
    driving = str(root / "driving.npy")
    np.save(driving, driving_sequence())
    return {"root": root, "model": model, "sources": sources, "landmark_files": landmark_files,
            "landmarks": landmarks, "driving": driving}


def test_cli_writes_gif_with_every_frame(workspace, capsys):
    out = str(workspace["root"] / "out.gif")
    assert cli_main([
        "animate", "--model", workspace["model"], "--sources", *workspace["sources"],
        "--source-landmarks", *workspace["landmark_files"], "--driving", workspace["driving"], "--out", out,
        "--fps", "20", "--no-progress",
    ]) == 0
    printed = capsys.readouterr().out
    assert f"{FRAMES} frames at 20 fps" in printed and "1 driving frames without a face" in printed
    expected = animate_lib.animate(workspace["model"], workspace["sources"], workspace["driving"],
                                   source_landmarks=workspace["landmarks"], progress=False, return_frames=True).images
    # Pillow stores identical consecutive frames once with their durations added (the faceless
    # frame 3 repeats frame 2): played back, the GIF shows FRAMES frames of 50 ms.
    played = []
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.size == (SIZE, SIZE) and gif.info["loop"] == 0
        assert gif.n_frames == FRAMES - 1
        for index in range(gif.n_frames):
            gif.seek(index)
            assert gif.info["duration"] % 50 == 0
            played += [np.asarray(gif.convert("RGB"), dtype=np.int16)] * (gif.info["duration"] // 50)
    assert len(played) == FRAMES
    for index, frame in enumerate(played):
        # A 256-colour palette per frame: close to the rendered frame.
        assert np.abs(frame - expected[index]).mean() < 16.0
    assert not [name for name in os.listdir(workspace["root"]) if name.startswith(".tmp-")]


def test_api_frames_are_model_renders(workspace):
    result = animate_lib.animate(workspace["model"], workspace["sources"], workspace["driving"],
                                 source_landmarks=workspace["landmarks"], progress=False, return_frames=True)
    assert (result.frames, result.missing_faces, result.path) == (FRAMES, 1, None)
    assert result.fps > 0 and result.overall_fps > 0 and result.video_fps == 25.0
    renderer = animate_lib.FaceRenderer(workspace["model"])
    assert (renderer.num_sources, renderer.size) == (K, SIZE)
    crops = [face.crop_face(animate_lib.read_image(path), points, SIZE) for path, points in
             zip(workspace["sources"], workspace["landmarks"])]
    renderer.set_sources([crop for crop, _ in crops], [points for _, points in crops])
    driving = driving_sequence()
    for index in (0, 2, 5):
        target = animate_lib.landmarks_in_crop(driving[index], SIZE)
        np.testing.assert_array_equal(result.images[index], renderer.render(target))
    np.testing.assert_array_equal(result.images[3], result.images[2])  # faceless frame: last landmarks
    assert np.abs(result.images[0].astype(int) - result.images[2]).max() > 0  # the mouth moves the image
    assert result.images[0].dtype == np.uint8 and result.images[0].shape == (SIZE, SIZE, 3)


def test_relative_motion_starts_at_the_source_face(workspace):
    result = animate_lib.animate(workspace["model"], workspace["sources"], driving_sequence()[:2],
                                 source_landmarks=workspace["landmarks"], relative=True, progress=False,
                                 return_frames=True)
    renderer = animate_lib.FaceRenderer(workspace["model"])
    crops = [face.crop_face(animate_lib.read_image(path), points, SIZE) for path, points in
             zip(workspace["sources"], workspace["landmarks"])]
    renderer.set_sources([crop for crop, _ in crops], [points for _, points in crops])
    np.testing.assert_array_equal(result.images[0], renderer.render(crops[0][1]))


def test_landmarks_in_crop_matches_crop_face():
    points = face.template_landmarks(100, 80) + [13.0, 7.0]
    image = np.zeros((140, 120, 3), np.uint8)
    _, moved = face.crop_face(image, points, SIZE)
    np.testing.assert_allclose(animate_lib.landmarks_in_crop(points, SIZE), moved, atol=1e-5)


def test_mp4_output(workspace):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    out = str(workspace["root"] / "out.mp4")
    result = animate_lib.animate(workspace["model"], workspace["sources"], workspace["driving"], out,
                                 source_landmarks=workspace["landmarks"], progress=False)
    assert result.path == out and result.frames == FRAMES
    reader = imageio.get_reader(out)
    try:
        frames = [frame for frame in reader]
    finally:
        reader.close()
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)


def test_errors(workspace):
    with pytest.raises(ValueError, match="must be float \\[T, 68, 2\\].*\\(6, 5, 2\\)"):
        animate_lib.animate(workspace["model"], workspace["sources"], np.zeros((6, 5, 2)),
                            source_landmarks=workspace["landmarks"], progress=False)
    with pytest.raises(ValueError, match="exported for K = 2 sources, got 1"):
        animate_lib.animate(workspace["model"], workspace["sources"][:1], workspace["driving"],
                            source_landmarks=workspace["landmarks"][:1], progress=False)
    with pytest.raises(ValueError, match="must end with one of"):
        animate_lib.animate(workspace["model"], workspace["sources"], workspace["driving"],
                            str(workspace["root"] / "out.avi"), source_landmarks=workspace["landmarks"],
                            progress=False)


def test_source_without_a_face(workspace):
    pytest.importorskip("mediapipe")
    blank = np.full((PHOTO, PHOTO, 3), 128, np.uint8)
    with pytest.raises(animate_lib.NoFaceError, match="source 0: no face found"):
        animate_lib.animate(workspace["model"], [blank, blank], workspace["driving"], progress=False)
