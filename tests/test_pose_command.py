"""`tfrf pose`: a photo's keypoints as the pose JSON `tfrf generate` takes (the same image as the
photo itself gives), a folder of frames as the driving poses JSON `tfrf animate` takes (the same
frames as the folder itself gives), face landmarks as `.npy`, overlays, and users' mistakes.

The person is scikit-image's `astronaut` (a real photo, head and shoulders, facing the camera)."""
import argparse
import json
import os

import numpy as np
import pytest
from PIL import Image

import tfrf
from tfrf import cli, runs
from tfrf.animation import face as face_animation
from tfrf.animation import person as person_animation
from tfrf.datasets import people_common
from tfrf.pose import face, frames, overlay
from tfrf.pose import keypoints as kp

from helpers import tiny_config

FRAME = 256  # the driving frames' side
SHIFT = 32  # she moves right in the last frame
NAME = {name: index for index, name in enumerate(kp.KEYPOINT_NAMES)}


def assert_same_image(image, reference, what="image"):
    """The pose JSON keeps full precision: the same pixels as detecting in the photo itself."""
    np.testing.assert_array_equal(np.asarray(image), np.asarray(reference), err_msg=what)


def run_command(argv):
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """(the photo's path, its pixels)."""
    image = pytest.importorskip("skimage.data").astronaut()
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(image).save(path)
    return str(path), image


@pytest.fixture(scope="module")
def frame_folder(astronaut, tmp_path_factory):
    """frame1.png (her), frame2.png (an empty white frame), frame10.png (her, moved right): in
    name order with numbers as numbers, not 1, 10, 2; a note and a hidden file are skipped."""
    folder = tmp_path_factory.mktemp("frames")
    small = np.asarray(Image.fromarray(astronaut[1]).resize((FRAME, FRAME), Image.BICUBIC))
    shifted = np.full_like(small, 255)
    shifted[:, SHIFT:] = small[:, :-SHIFT]
    for number, image in ((1, small), (2, np.full_like(small, 255)), (10, shifted)):
        Image.fromarray(image).save(folder / f"frame{number}.png")
    (folder / "notes.txt").write_text("not a frame")
    Image.fromarray(small[:8, :8]).save(folder / ".thumbnail.png")
    return str(folder)


def test_frame_folders_are_read_in_name_order(frame_folder, tmp_path):
    assert [os.path.basename(path) for path in frames.frame_paths(frame_folder)] == [
        "frame1.png", "frame2.png", "frame10.png"]
    read, count, fps = frames.read_frames(frame_folder)
    images = list(read)
    assert (count, fps, len(images)) == (3, None, 3) and (images[1] == 255).all()
    # Face animation's driving frames from a folder: the landmarker sees every frame in order.
    seen = []
    landmarks, count, fps = face_animation.driving_landmarks(frame_folder, lambda image: seen.append(image) or None)
    assert list(landmarks) == [None] * 3 and (count, fps) == (3, None)
    np.testing.assert_array_equal(seen[1], images[1])
    np.testing.assert_array_equal(seen[2], images[2])

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (8, 8)).save(mixed / "a.png")
    Image.new("RGB", (8, 6)).save(mixed / "b.png")
    with pytest.raises(ValueError, match=r"frame .*b\.png is 8x6, but the folder's first frame .*a\.png is 8x8"):
        list(frames.read_frames(str(mixed))[0])
    with pytest.raises(ValueError, match=r"folder .*empty holds no frames"):
        (tmp_path / "empty").mkdir()
        frames.read_frames(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"must be a poses \.json or a video .*, or a folder of frames"):
        person_animation.driving_poses(str(tmp_path / "dance.txt"), (128, 64))
    with pytest.raises(ValueError, match=r"landmarks or a video .*, or a folder of frames"):
        face_animation.driving_landmarks(str(tmp_path / "talk.txt"))


def test_overlays_colour_each_side():
    rng = np.random.default_rng(0)
    image = np.full((256, 176, 3), 128, np.uint8)
    _, points = people_common.stick_figure(rng, 256, 176)
    points[NAME["left_knee"]] = kp.MISSING
    drawn = overlay.draw_keypoints(image, points)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    for index, (y, x) in enumerate(points):
        if index != NAME["left_knee"]:
            assert tuple(drawn[round(y), round(x)]) == overlay.SIDE_COLOURS[overlay.side(index)], index
    assert overlay.side(NAME["right_wrist"]) == "right" and overlay.side(NAME["neck"]) == "middle"
    np.testing.assert_array_equal(overlay.draw_keypoints(image, None), image)
    landmarks = face.template_landmarks(256, 176)
    drawn = overlay.draw_face(image, landmarks)
    x, y = np.round(landmarks[30]).astype(int)  # the nose tip
    assert tuple(drawn[y, x]) == face.PART_COLORS["nose"]


def test_users_mistakes_are_one_line(astronaut, frame_folder, tmp_path, capsys):
    photo = astronaut[0]
    for argv, message in [
        ([photo, "--out", str(tmp_path / "pose.npy")], "must end in .json"),
        ([photo, "--face", "--out", str(tmp_path / "pose.json")], "must end in .npy"),
        ([photo, "--out", str(tmp_path / "pose.json"), "--overlay", str(tmp_path / "seen.gif")],
         "seen.gif must end in .png or .jpg or .jpeg for a photo"),
        ([frame_folder, "--out", str(tmp_path / "poses.json"), "--overlay", str(tmp_path / "seen.png")],
         "seen.png must end in .gif or .mp4 for a video or folder"),
        ([str(tmp_path / "nowhere.jpg"), "--out", str(tmp_path / "pose.json")], "nowhere.jpg does not exist"),
        ([str(tmp_path), "--out", str(tmp_path / "pose.json")], "holds no frames"),
    ]:
        assert cli.main(["pose", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tfrf pose: ") and message in lines[0], lines
    assert not os.path.exists(tmp_path / "pose.json")


def test_photo_without_a_person_or_face_exits_2(tmp_path, capsys):
    pytest.importorskip("mediapipe")
    blank = tmp_path / "empty_room.png"
    Image.new("RGB", (176, 256), (255, 255, 255)).save(blank)
    for flags, out, message in [([], "pose.json", "empty_room.png: no person found"),
                                (["--face"], "face.npy", "empty_room.png: no face found")]:
        assert cli.main(["pose", str(blank), "--out", str(tmp_path / out), *flags]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not os.path.exists(tmp_path / out)


@pytest.fixture(scope="module")
def photo_pose(astronaut, tmp_path_factory):
    """`tfrf pose astronaut.png --out pose.json --overlay seen.png`: (pose path, overlay path, printed)."""
    pytest.importorskip("mediapipe")
    root = tmp_path_factory.mktemp("pose")
    out, seen = str(root / "pose.json"), str(root / "seen.png")
    assert run_command(["pose", astronaut[0], "--out", out, "--overlay", seen]) == 0
    return out, seen


def test_photo_pose_is_extract_keypoints(astronaut, photo_pose, capsys):
    from tfrf.pose.keypoint_detection import extract_keypoints

    keypoints, image_size = kp.load_pose_json(photo_pose[0])
    expected = extract_keypoints(astronaut[1])
    assert image_size == (512, 512)
    np.testing.assert_array_equal(keypoints, expected)
    np.testing.assert_array_equal(kp.present(keypoints), kp.present(expected))
    assert kp.present(keypoints)[[NAME["nose"], NAME["neck"], NAME["right_shoulder"], NAME["left_shoulder"]]].all()

    seen = np.asarray(Image.open(photo_pose[1]).convert("RGB"))
    assert seen.shape == astronaut[1].shape
    changed = np.any(seen != astronaut[1], axis=-1)
    for index in np.flatnonzero(kp.present(keypoints)):
        y, x = np.round(keypoints[index]).astype(int)
        assert changed[y, x] and tuple(seen[y, x]) == overlay.SIDE_COLOURS[overlay.side(index)], index
    assert not changed[:40].any() and changed.mean() < 0.05  # only the skeleton is drawn


def test_photo_pose_json_generates_the_photos_image(astronaut, photo_pose, tmp_path):
    """`tfrf generate --target-pose pose.json` gives the image `--target-pose astronaut.png` gives."""
    from tfrf.models import Generator

    config = tiny_config("deepfashion", 64)
    generator = Generator(config)
    generator(generator.dummy_inputs())
    weights = str(tmp_path / "generator.weights.h5")
    generator.save_weights(weights)
    (tmp_path / "config.json").write_text(config.to_json())
    image, points = people_common.stick_figure(np.random.default_rng(0), 256, 176)
    Image.fromarray(image).save(tmp_path / "source.png")
    kp.save_pose_json(str(tmp_path / "source.json"), points, (256, 176))
    base = ["generate", "--config", str(tmp_path / "config.json"), "--weights", weights,
            "--sources", str(tmp_path / "source.png"), "--source-poses", str(tmp_path / "source.json")]
    images = []
    for target in (astronaut[0], photo_pose[0]):
        out = str(tmp_path / f"{len(images)}.png")
        assert run_command(base + ["--target-pose", target, "--out", out]) == 0
        images.append(np.asarray(Image.open(out)).astype(int))
    assert_same_image(images[0], images[1])


@pytest.fixture(scope="module")
def people_run(tmp_path_factory):
    """A random-weight market1501 run (width x0.125) and two stick-figure sources with poses."""
    root = tmp_path_factory.mktemp("people")
    config = tfrf.ModelConfig.preset("market1501", width_multiplier=0.125)
    (root / "run").mkdir()
    (root / "run" / "config.json").write_text(config.to_json())
    runs.load_generator(config, None).save_weights(str(root / "run" / "generator_full.weights.h5"))
    rng = np.random.default_rng(3)
    sources, poses = [], []
    for name in ("a", "b"):
        image, points = people_common.stick_figure(rng, 128, 64)
        Image.fromarray(image).save(root / f"{name}.png")
        kp.save_pose_json(str(root / f"{name}.json"), points, (128, 64))
        sources.append(str(root / f"{name}.png"))
        poses.append(str(root / f"{name}.json"))
    return {"root": root, "run": str(root / "run"), "sources": sources, "poses": poses}


def test_folder_poses_animate_as_the_folder(frame_folder, people_run, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    out, seen = str(tmp_path / "poses.json"), str(tmp_path / "seen.gif")
    assert cli.main(["pose", frame_folder, "--out", out, "--overlay", seen]) == 0
    printed = capsys.readouterr().out
    assert f"3 frames of {frame_folder} ({FRAME}x{FRAME}); 1 frames without a person" in printed
    poses, size, fps = person_animation.load_driving_poses(out)
    with open(out, encoding="utf-8") as stream:
        content = json.load(stream)
    assert size == (FRAME, FRAME) and fps is None and content["frames"][1] is None
    assert poses[0] is not None and poses[2] is not None
    assert poses[2][NAME["nose"], 1] - poses[0][NAME["nose"], 1] == pytest.approx(SHIFT, abs=3)  # frame10 last
    with Image.open(seen) as opened:
        assert opened.size == (FRAME, FRAME) and opened.n_frames == 3

    base = ["animate", "--run", people_run["run"], "--sources", *people_run["sources"],
            "--source-poses", *people_run["poses"], "--no-progress"]
    assert cli.main(base + ["--driving", out, "--out", str(tmp_path / "animated.gif")]) == 0
    printed = capsys.readouterr().out
    assert "3 frames at 25 fps" in printed and "1 driving frames without a person" in printed

    generator = runs.load_generator(*runs.resolve_model(argparse.Namespace(run=people_run["run"])))
    rendered = [person_animation.animate_person(generator, people_run["sources"], driving, progress=False,
                                                source_poses=people_run["poses"], return_frames=True).images
                for driving in (out, frame_folder)]
    assert len(rendered[0]) == len(rendered[1]) == 3
    for index, (from_json, from_folder) in enumerate(zip(*rendered)):
        assert_same_image(from_json, from_folder, f"frame {index}")


def test_face_landmarks_of_a_photo_and_a_folder(astronaut, frame_folder, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    out, seen = str(tmp_path / "face.npy"), str(tmp_path / "face.jpg")
    assert cli.main(["pose", astronaut[0], "--face", "--out", out, "--overlay", seen]) == 0
    assert "68 face landmarks" in capsys.readouterr().out
    landmarks = np.load(out)
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    with face.MediaPipeFaceLandmarker(static_image_mode=True) as landmarker:
        np.testing.assert_array_equal(landmarks, landmarker(astronaut[1]))
    assert np.linalg.norm(landmarks[30] - (225, 126)) < 15  # the nose tip, (x, y), by eye
    with Image.open(seen) as opened:
        assert opened.size == (512, 512) and opened.format == "JPEG"

    driving = str(tmp_path / "driving.npy")
    assert cli.main(["pose", frame_folder, "--face", "--out", driving]) == 0
    assert "1 frames without a face" in capsys.readouterr().out
    sequence = np.load(driving)
    assert sequence.shape == (3, 68, 2) and np.isnan(sequence[1]).all() and np.isfinite(sequence[[0, 2]]).all()
    # What `tfrf animate --model ... --driving FOLDER` tracks.
    with face_animation.default_landmarker(False) as landmarker:
        from_folder, count, _ = face_animation.driving_landmarks(frame_folder, landmarker)
        from_folder = list(from_folder)
    assert count == 3 and from_folder[1] is None
    np.testing.assert_array_equal(sequence[[0, 2]], np.stack([from_folder[0], from_folder[2]]))


def test_video_poses_are_what_animate_tracks(frame_folder, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    video = str(tmp_path / "dance.mp4")
    with imageio.get_writer(video, fps=5, codec="libx264", quality=9, macro_block_size=1) as writer:
        for path in frames.frame_paths(frame_folder):
            writer.append_data(np.asarray(Image.open(path)))
    out, seen = str(tmp_path / "dance.json"), str(tmp_path / "seen.mp4")
    assert cli.main(["pose", video, "--out", out, "--overlay", seen]) == 0
    assert f"3 frames of {video} ({FRAME}x{FRAME} at 5 fps); 1 frames without a person" in capsys.readouterr().out
    poses, size, fps = person_animation.load_driving_poses(out)
    assert (size, fps, poses[1]) == ((FRAME, FRAME), 5.0, None)
    tracked, count, _ = person_animation.driving_poses(video, (FRAME, FRAME), "stretch")  # same size: unchanged
    tracked = list(tracked)
    assert count == 3 and tracked[1] is None
    for pose, expected in zip(poses[::2], tracked[::2]):
        np.testing.assert_array_equal(pose, expected)
    reader = imageio.get_reader(seen)
    try:
        assert reader.count_frames() == 3 and reader.get_meta_data()["fps"] == 5
    finally:
        reader.close()
