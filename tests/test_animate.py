"""Animation: `tfrf animate` on a synthetic driving landmark sequence (faces, the TFLite model) or
a poses JSON / video (people, a run) writes a playable file with the right frame count; the
Python API's frames are the model's renders, frames without a face or person repeat the last."""
import argparse
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfrf
from tfrf import inference, photos, runs
from tfrf.animation import face as animate_lib
from tfrf.animation import person as person_animation
from tfrf.cli import build_parser
from tfrf.cli import main as cli_main
from tfrf.datasets import people_common
from tfrf.export import export_generator
from tfrf.export.tflite import convert
from tfrf.pose import face
from tfrf.pose import keypoints as kp

from helpers import tiny_config

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
    config = tiny_config("voxceleb2", SIZE)
    model = str(root / "face.tflite")
    with open(model, "wb") as stream:
        stream.write(convert(export_generator(config, tflite=True), K))
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
    crops = [face.crop_face(photos.read_photo(path), points, SIZE) for path, points in
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
    crops = [face.crop_face(photos.read_photo(path), points, SIZE) for path, points in
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


# --- person animation (GFLA's second application) -------------------------------------------

PERSON = (128, 64)  # market1501's H x W
DRIVING = (256, 128)  # the driving poses' frame size: twice the model's


def _person_frames():
    """Driving poses in a 256x128 frame: frame 0 has no keypoint (before anyone is seen),
    frame 3 is null (nobody), the others are stick figures."""
    rng = np.random.default_rng(7)
    frames = [people_common.stick_figure(rng, *DRIVING)[1] for _ in range(5)]
    frames[0] = np.full((18, 2), -1.0, np.float32)
    frames[3] = None
    return frames


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """A random-weight market1501 model (width x0.125) saved as a run, two stick-figure
    sources with pose JSONs, and a poses JSON written by hand in the documented format."""
    root = tmp_path_factory.mktemp("people")
    config = tfrf.ModelConfig.preset("market1501", width_multiplier=0.125)
    generator = runs.load_generator(config, None)
    run_dir = root / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(config.to_json())
    generator.save_weights(str(run_dir / "generator_full.weights.h5"))
    rng = np.random.default_rng(3)
    sources, poses, images, keypoints = [], [], [], []
    for name in ("a", "b"):
        image, points = people_common.stick_figure(rng, *PERSON)
        Image.fromarray(image).save(root / f"{name}.png")
        kp.save_pose_json(str(root / f"{name}.json"), points, PERSON)
        sources.append(str(root / f"{name}.png"))
        poses.append(str(root / f"{name}.json"))
        images.append(image)
        keypoints.append(points)
    frames = _person_frames()
    driving = root / "poses.json"
    driving.write_text(json.dumps({"height": DRIVING[0], "width": DRIVING[1], "fps": 10,
                                   "frames": [None if f is None else f.tolist() for f in frames]}))
    return {"root": root, "generator": generator, "run": str(run_dir), "sources": sources, "poses": poses,
            "images": images, "keypoints": keypoints, "driving": str(driving), "frames": frames}


@pytest.fixture(scope="module")
def people_generator(people):
    """The run's generator, loaded as `tfrf animate --run` loads it."""
    return runs.load_generator(*runs.resolve_model(argparse.Namespace(run=people["run"])))


@pytest.fixture(scope="module")
def expected_person_frames(people):
    """Direct generator calls: sources as they are (already 128x64), each driving pose halved
    (pixel centres: (p + 0.5) / 2 - 0.5), missing frames repeating the last pose (the first
    source's before any)."""
    expected, last = [], people["keypoints"][0]
    for frame in people["frames"]:
        if frame is not None and kp.present(frame).any():
            last = np.where(frame >= 0, (frame + 0.5) / 2 - 0.5, -1).astype(np.float32)
        inputs = inference.build_inputs(people["images"], people["keypoints"], last)
        expected.append(inference.generate_image(people["generator"], inputs))
    return expected


def test_person_animation_frames_are_generator_calls(people, people_generator, expected_person_frames):
    result = person_animation.animate_person(people_generator, people["sources"], people["driving"],
                                             source_poses=people["poses"], progress=False, return_frames=True)
    assert (result.frames, result.missing_frames, result.video_fps) == (5, 2, 10.0)
    expected = expected_person_frames
    for index, (frame, reference) in enumerate(zip(result.images, expected)):
        assert frame.shape == (*PERSON, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, reference, err_msg=f"frame {index}")
    np.testing.assert_array_equal(result.images[3], result.images[2])  # nobody: the last pose again
    assert np.abs(result.images[2].astype(int) - result.images[1]).max() > 0  # the pose drives the image


def test_person_animation_cli_writes_a_gif(people, expected_person_frames, capsys):
    expected = expected_person_frames
    base = ["animate", "--run", people["run"], "--sources", *people["sources"], "--source-poses", *people["poses"],
            "--driving", people["driving"], "--no-progress"]
    gif = str(people["root"] / "out.gif")
    assert cli_main(base + ["--out", gif]) == 0
    printed = capsys.readouterr().out
    assert "5 frames at 10 fps" in printed and "2 driving frames without a person" in printed
    played = []
    with Image.open(gif) as opened:
        assert opened.size == (PERSON[1], PERSON[0])
        for index in range(opened.n_frames):  # identical consecutive frames are stored once
            opened.seek(index)
            played += [np.asarray(opened.convert("RGB"), dtype=np.int16)] * (opened.info["duration"] // 100)
    assert len(played) == 5
    for frame, reference in zip(played, expected):
        assert np.abs(frame - reference).mean() < 16.0  # a 256-colour palette per frame
    assert not [name for name in os.listdir(people["root"]) if name.startswith(".tmp-")]


def test_person_animation_writes_an_mp4(people, people_generator, expected_person_frames):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    expected = expected_person_frames
    mp4 = str(people["root"] / "out.mp4")
    result = person_animation.animate_person(people_generator, people["sources"], people["driving"], mp4,
                                             source_poses=people["poses"], fps=8, progress=False)
    assert (result.path, result.frames, result.video_fps) == (mp4, 5, 8.0)
    reader = imageio.get_reader(mp4)
    try:
        frames = [np.asarray(frame, dtype=np.int16) for frame in reader]
        assert reader.get_meta_data()["fps"] == 8
    finally:
        reader.close()
    assert len(frames) == 5 and frames[0].shape == (*PERSON, 3)
    # H.264 (4:2:0 colour) blurs a random network's speckle, yet each decoded frame is closest
    # to its own generated frame.
    errors = np.array([[np.abs(frame - reference).mean() for reference in expected] for frame in frames])
    for index in range(5):
        others = [j for j in range(5) if not np.array_equal(expected[j], expected[index])]
        assert errors[index, index] < 28.0 and errors[index, others].min() > errors[index, index] + 4.0, errors
    assert not [name for name in os.listdir(people["root"]) if name.startswith(".tmp-")]


def test_driving_poses_json_round_trip_and_errors(people, tmp_path):
    frames = people["frames"]
    path = tmp_path / "saved.json"
    person_animation.save_driving_poses(str(path), frames, *DRIVING, fps=12.5)
    loaded, size, fps = person_animation.load_driving_poses(str(path))
    assert size == DRIVING and fps == 12.5 and len(loaded) == 5
    assert loaded[0] is None and loaded[3] is None  # no keypoint / null: nobody in the frame
    np.testing.assert_allclose(loaded[1], np.round(frames[1], 3))
    bad = tmp_path / "bad.json"
    for content, message in [
        ({"height": 8, "width": 8, "frames": [[[1, 2]] * 17]}, r"bad\.json: frame 0 must be 18 finite \[y, x\] pairs"),
        ({"height": 8, "width": 8, "frames": []}, r"bad\.json: frames must be a non-empty list"),
        ({"height": 0, "width": 8, "frames": [None]}, r"bad\.json: height and width must be positive"),
        ({"frames": [None]}, r"bad\.json: expected \{\"height\": H"),
    ]:
        bad.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            person_animation.load_driving_poses(str(bad))
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json do not exist"):
        person_animation.load_driving_poses(str(tmp_path / "nowhere.json"))
    with pytest.raises(ValueError, match=r"must be a poses \.json or a video"):
        person_animation.driving_poses(str(tmp_path / "dance.txt"), PERSON)


def _run_command(argv):
    args = build_parser().parse_args(argv)
    return args.func(args)


def test_person_animation_refuses_wrong_models_and_flags(people, tmp_path):
    base = ["--sources", *people["sources"], "--driving", people["driving"], "--out", str(tmp_path / "x.gif")]
    face_run = tmp_path / "face_run"
    face_run.mkdir()
    (face_run / "config.json").write_text(tfrf.ModelConfig.preset("voxceleb2").to_json())
    (face_run / "generator_full.weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"needs a keypoint model \(18 pose channels.*'voxceleb2' has 3"):
        _run_command(["animate", "--run", str(face_run)] + base)
    with pytest.raises(ValueError, match="not both"):
        _run_command(["animate", "--run", people["run"], "--model", "face.tflite"] + base)
    with pytest.raises(ValueError, match="no model"):
        _run_command(["animate"] + base)
    with pytest.raises(ValueError, match=r"--source-landmarks only apply to face animation"):
        _run_command(["animate", "--run", people["run"], "--source-landmarks", "a.npy", "b.npy"] + base)
    with pytest.raises(ValueError, match=r"--source-poses only apply to people animation"):
        _run_command(["animate", "--model", "face.tflite", "--source-poses", *people["poses"]] + base)
    with pytest.raises(ValueError, match=r"--source-poses gives 1 poses for 2 --sources"):
        _run_command(["animate", "--run", people["run"], "--source-poses", people["poses"][0]] + base)


def test_person_animation_from_a_video_with_mediapipe(people, tmp_path, capsys):
    """Real detection end to end: the source photo's keypoints and every driving frame's come
    from MediaPipe pose (driving frames 128x128, upsampled for detection); the blank frame has
    nobody and repeats the last pose."""
    pytest.importorskip("mediapipe")
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    astronaut = pytest.importorskip("skimage.data").astronaut()
    Image.fromarray(astronaut).save(tmp_path / "astronaut.jpg", quality=95)
    small = np.asarray(Image.fromarray(astronaut).resize((128, 128), Image.BICUBIC))
    shifted = np.full_like(small, 255)
    shifted[:, 16:] = small[:, :-16]  # she moves right
    video = str(tmp_path / "dance.mp4")
    with imageio.get_writer(video, fps=5, codec="libx264", quality=9, macro_block_size=1) as writer:
        for frame in (small, np.full_like(small, 255), shifted):
            writer.append_data(frame)
    out = str(tmp_path / "dance.gif")
    assert cli_main(["animate", "--run", people["run"], "--sources", str(tmp_path / "astronaut.jpg"),
                     "--driving", video, "--out", out, "--keypoint-threshold", "0.5", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "3 frames at 5 fps" in printed and "1 driving frames without a person" in printed
    with Image.open(out) as opened:  # the blank frame repeats the first: stored once, shown twice as long
        durations = []
        for index in range(opened.n_frames):
            opened.seek(index)
            durations.append(opened.info["duration"])
    assert durations == [400, 200]

    targets, count, fps = person_animation.driving_poses(video, PERSON, "pad", threshold=0.5)
    targets = list(targets)
    assert (count, fps) == (3, 5.0) and targets[1] is None
    name = {n: i for i, n in enumerate(kp.KEYPOINT_NAMES)}
    for target in (targets[0], targets[2]):
        # 128x128 padded into 64 x 64 in the middle of 128 x 64: y = 32 + ..., a face in the top half
        eyes_x = target[[name["right_eye"], name["left_eye"]], 1]
        assert eyes_x[0] < target[name["nose"], 1] < eyes_x[1]
        assert 32 <= target[name["nose"], 0] < 64
    # 16 px to the right in 128 is 8 px at 64 wide.
    assert targets[2][name["nose"], 1] - targets[0][name["nose"], 1] == pytest.approx(8.0, abs=1.5)
