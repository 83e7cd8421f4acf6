"""Faults a new user meets, each ending in one stderr line, exit status 2 and no output left
behind: a driving sequence without any face or person, a truncated / foreign / empty `.tflite`
(the interpreter would crash on it), a corrupt driving video, a full disk. Also: `--out` writes
the format its extension names, outputs get the umask's mode, and TensorFlow's start-up lines
and the TFLite converter's statistics stay hidden unless `--verbose`."""
import contextlib
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfrf
from tfrf import io as tfrf_io
from tfrf import runs
from tfrf.animation import video
from tfrf.cli import build_parser
from tfrf.cli import main as cli_main
from tfrf.datasets import people_common
from tfrf.export import export_generator
from tfrf.export.tflite import convert
from tfrf.pose import face
from tfrf.pose import keypoints as kp

from helpers import save_tiny_people_model, tiny_config

K = 2
PHOTO = 96
FRAMES = 5


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A tiny face .tflite (K = 2, 64x64), two source photos with landmark files, a driving
    landmark sequence and one in which no frame has a face (NaN)."""
    tf.keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("faces")
    model = root / "face.tflite"
    model.write_bytes(convert(export_generator(tiny_config("voxceleb2", 64), tflite=True), K))
    rng = np.random.default_rng(0)
    sources, landmarks = [], []
    for index in range(K):
        points = face.template_landmarks(PHOTO - 16, PHOTO - 16) + 8 + index
        photo = (rng.uniform(0, 255, (PHOTO, PHOTO, 3)) * 0.3 + 80).astype(np.uint8)
        photo = np.maximum(photo, face.draw_landmarks(points, PHOTO, PHOTO))
        Image.fromarray(photo).save(root / f"s{index}.png")
        np.save(root / f"s{index}.npy", points)
        sources.append(str(root / f"s{index}.png"))
        landmarks.append(str(root / f"s{index}.npy"))
    base = face.template_landmarks(128, 128).astype(np.float64)
    np.save(root / "driving.npy", np.stack([base + [step, 0.0] for step in range(FRAMES)]))
    np.save(root / "faceless.npy", np.full((FRAMES, 68, 2), np.nan))
    return {"root": root, "model": str(model), "sources": sources, "landmarks": landmarks,
            "driving": str(root / "driving.npy"), "faceless": str(root / "faceless.npy")}


def face_command(faces, out, model=None, driving=None):
    return ["animate", "--model", model or faces["model"], "--sources", *faces["sources"],
            "--source-landmarks", *faces["landmarks"], "--driving", driving or faces["driving"],
            "--out", str(out), "--no-progress"]


def one_line(captured, status, command="animate"):
    """The single stderr line of a failed command (asserting status 2 and nothing else)."""
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith(f"tfrf {command}: ") and "Traceback" not in captured.err
    assert len(lines[0]) < 300, lines[0]
    return lines[0]


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(".tmp-") or name.startswith("out"))


# --- driving sequences without any face or person -------------------------------------------

def test_face_animation_without_any_face_exits_2(faces, tmp_path, capsys):
    status = cli_main(face_command(faces, tmp_path / "out.gif", driving=faces["faceless"]))
    line = one_line(capsys.readouterr(), status)
    assert "faceless.npy: none of its 5 frames has a face" in line
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """A random-weight market1501 run (width x0.125), a source photo with its pose JSON, and a
    poses JSON in which nobody is found (null frames, a frame without any keypoint)."""
    root = tmp_path_factory.mktemp("people")
    config = tfrf.ModelConfig.preset("market1501", width_multiplier=0.125)
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(config.to_json())
    runs.load_generator(config, None).save_weights(str(run / "generator_full.weights.h5"))
    image, points = people_common.stick_figure(np.random.default_rng(3), 128, 64)
    Image.fromarray(image).save(root / "a.png")
    kp.save_pose_json(str(root / "a.json"), points, (128, 64))
    nobody = root / "nobody.json"
    nobody.write_text(json.dumps({"height": 256, "width": 128, "frames": [None, [[-1, -1]] * 18, None]}))
    return {"run": str(run), "source": str(root / "a.png"), "pose": str(root / "a.json"), "nobody": str(nobody)}


def test_person_animation_without_anyone_exits_2(people, tmp_path, capsys):
    status = cli_main(["animate", "--run", people["run"], "--sources", people["source"], "--source-poses",
                       people["pose"], "--driving", people["nobody"], "--out", str(tmp_path / "out.mp4"),
                       "--no-progress"])
    line = one_line(capsys.readouterr(), status)
    assert "nobody.json: none of its 3 frames has a person" in line
    assert leftovers(tmp_path) == []


def test_frames_before_the_first_pose_repeat_the_first_sources_pose(tmp_path):
    rendered = []

    def render(target):
        rendered.append(target)
        return np.full((2, 2, 3), target, np.uint8)

    result = video.run_animation([None, None, 7, None, 9], render, 1, progress=False, return_frames=True)
    assert [int(frame[0, 0, 0]) for frame in result.images] == [1, 1, 7, 7, 9]
    assert (result.frames, result.missing_frames) == (5, 3)
    with pytest.raises(video.NoDrivingPoseError, match="none of its 3 frames has a person"):
        video.run_animation([None] * 3, render, 1, out=str(tmp_path / "out.gif"), progress=False,
                            subject="person")
    assert rendered == [1, 7, 7, 9] and leftovers(tmp_path) == []


# --- truncated, foreign and empty TFLite models ---------------------------------------------

def bad_models(faces, folder):
    data = open(faces["model"], "rb").read()
    models = {
        "truncated.tflite": data[: len(data) // 2],
        "cut_short.tflite": data[:1000],
        "foreign.tflite": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty.tflite": b"",
        "photo.tflite": open(faces["sources"][0], "rb").read(),
    }
    for name, content in models.items():
        (folder / name).write_bytes(content)
    return {name: str(folder / name) for name in models}


@pytest.mark.parametrize("name, message", [
    ("truncated.tflite", "is truncated or corrupt"),
    ("cut_short.tflite", "is truncated or corrupt"),
    ("foreign.tflite", "is not a TFLite model"),
    ("empty.tflite", "is empty"),
    ("photo.tflite", "is not a TFLite model"),
])
def test_bad_tflite_is_one_line(faces, tmp_path, capsys, name, message):
    model = bad_models(faces, tmp_path)[name]
    status = cli_main(face_command(faces, tmp_path / "out.gif", model=model))
    line = one_line(capsys.readouterr(), status)
    assert f"TFLite model {model} {message}" in line
    assert leftovers(tmp_path) == []


def test_every_prefix_of_a_model_is_refused(faces):
    from tfrf.export.tflite import check_flatbuffer

    data = open(faces["model"], "rb").read()
    check_flatbuffer(data)
    for cut in list(range(0, len(data), 4093)) + list(range(len(data) - 64, len(data))):
        with pytest.raises(ValueError, match="the model is (empty|truncated|not a TFLite model)"):
            check_flatbuffer(data[:cut])


def test_truncated_tflite_in_a_subprocess_is_one_line_without_tensorflow_noise(faces, tmp_path):
    """The interpreter crashed here (SIGSEGV, no message). The command imports TensorFlow, whose
    cuDNN/cuFFT/cuBLAS registration lines are hidden without --verbose."""
    model = bad_models(faces, tmp_path)["cut_short.tflite"]
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "tfrf", *face_command(faces, tmp_path / "out.gif", model=model)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr)
    assert lines[0].startswith("tfrf animate: TFLite model") and "is truncated or corrupt" in lines[0]
    assert "Unable to register" not in done.stderr and done.stdout == ""
    assert leftovers(tmp_path) == []


# --- corrupt driving videos -----------------------------------------------------------------

@pytest.fixture(scope="module")
def corrupt_videos(tmp_path_factory):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    root = tmp_path_factory.mktemp("videos")
    good = root / "good.mp4"
    with imageio.get_writer(str(good), fps=5, codec="libx264", macro_block_size=1) as writer:
        for step in range(10):
            writer.append_data(np.full((64, 64, 3), 20 * step, np.uint8))
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end
    (root / "noise.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return {"truncated": str(root / "truncated.mp4"), "noise": str(root / "noise.mp4")}


@pytest.mark.parametrize("which", ["truncated", "noise"])
def test_corrupt_driving_video_is_one_line(faces, corrupt_videos, tmp_path, capsys, which):
    """ffmpeg's 2.7 KB output (banner, configuration, warnings) comes down to its meaningful line."""
    path = corrupt_videos[which]
    status = cli_main(face_command(faces, tmp_path / "out.mp4", driving=path))
    line = one_line(capsys.readouterr(), status)
    assert line.startswith(f"tfrf animate: video {path} cannot be read: ") and "Invalid data found" in line, line
    assert leftovers(tmp_path) == []


# --- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs almost filled (root only: skipped where it cannot be mounted)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        (folder / "filler").write_bytes(b"\0" * 48 * 1024)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_is_one_line_and_leaves_nothing(faces, full_disk, tmp_path, capsys):
    driving = tmp_path / "long.npy"
    base = face.template_landmarks(128, 128).astype(np.float64)
    rng = np.random.default_rng(0)
    np.save(driving, np.stack([base + rng.uniform(0, 4, base.shape) for _ in range(200)]))
    for name in ("out.gif", "out.mp4"):
        out = full_disk / name
        status = cli_main(face_command(faces, out, driving=str(driving)))
        line = one_line(capsys.readouterr(), status)
        assert line == f"tfrf animate: [Errno 28] No space left on device: '{out}'"
        assert sorted(os.listdir(full_disk)) == ["filler"]
    with pytest.raises(OSError, match=r"No space left on device: '.*model\.tflite'"):
        tfrf_io.atomic_write_bytes(str(full_disk / "model.tflite"), b"\0" * 64 * 1024)
    assert sorted(os.listdir(full_disk)) == ["filler"]


# --- --out formats and modes ----------------------------------------------------------------

@pytest.fixture(scope="module")
def generate_inputs(tmp_path_factory):
    """A tiny deepfashion generator (64x64) saved with its config, a photo with a pose JSON."""
    root = tmp_path_factory.mktemp("generate")
    save_tiny_people_model(root)
    image, points = people_common.stick_figure(np.random.default_rng(0), 64, 64)
    Image.fromarray(image).save(root / "a.png")
    kp.save_pose_json(str(root / "a.json"), points, (64, 64))
    return ["generate", "--config", str(root / "config.json"), "--weights", str(root / "generator.weights.h5"),
            "--sources", str(root / "a.png"), "--source-poses", str(root / "a.json"),
            "--target-pose", str(root / "a.json")]


@contextlib.contextmanager
def umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_out_writes_the_format_its_extension_names(generate_inputs, tmp_path, capsys):
    from PIL import features

    magic = {"x.jpg": b"\xff\xd8\xff", "x.JPEG": b"\xff\xd8\xff", "x.png": b"\x89PNG\r\n\x1a\n"}
    if features.check("webp"):
        magic["x.webp"] = b"RIFF"
    for name, start in magic.items():
        assert cli_main(generate_inputs + ["--out", str(tmp_path / name)]) == 0
        data = (tmp_path / name).read_bytes()
        assert data.startswith(start), (name, data[:12])
        with Image.open(tmp_path / name) as opened:
            assert opened.size == (64, 64)
    assert (tmp_path / "x.webp").read_bytes()[8:12] == b"WEBP" or not features.check("webp")
    capsys.readouterr()
    status = cli_main(generate_inputs + ["--out", str(tmp_path / "x.bmp")])
    assert "x.bmp: extension .bmp; an image output must end in .png, .jpg, .jpeg" in one_line(
        capsys.readouterr(), status, "generate")
    assert not (tmp_path / "x.bmp").exists()


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_get_the_umasks_mode(faces, generate_inputs, tmp_path, mask):
    with umask(mask):
        assert cli_main(generate_inputs + ["--out", str(tmp_path / "x.jpg")]) == 0
        assert cli_main(face_command(faces, tmp_path / "out.gif")) == 0
        if _has_ffmpeg():
            assert cli_main(face_command(faces, tmp_path / "out.mp4")) == 0
        tfrf_io.atomic_write_bytes(str(tmp_path / "model.tflite"), b"TFL3")
        tfrf_io.atomic_directory(str(tmp_path / "model" / "1"),
                                 lambda path: os.makedirs(os.path.join(path, "variables")))
    files = [name for name in ("x.jpg", "out.gif", "out.mp4", "model.tflite") if (tmp_path / name).exists()]
    assert {name: oct(mode(tmp_path / name)) for name in files} == {name: oct(0o666 & ~mask) for name in files}
    for folder in ("model/1", "model/1/variables"):
        assert oct(mode(tmp_path / folder)) == oct(0o777 & ~mask)


def _has_ffmpeg():
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


# --- TensorFlow's and the converter's chatter -----------------------------------------------

def test_tflite_export_hides_the_converters_statistics(tmp_path, capfd):
    out = tmp_path / "face.tflite"
    with umask(0o022):
        assert cli_main(["export", "tflite", "--untrained", "--preset", "voxceleb2", "--width-multiplier", "0.125",
                         "--image-size", "64", "64", "--out", str(out)]) == 0
    captured = capfd.readouterr()
    assert captured.out.startswith(f"wrote {out} (") and len(captured.out.splitlines()) == 1
    assert "non-converted ops" not in captured.err and "arith.constant" not in captured.err, captured.err
    assert mode(out) == 0o644


def test_held_stderr_shows_native_output_only_on_failure_or_when_verbose(capfd):
    with tfrf_io.held_stderr():
        os.write(2, b"converter statistics\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError):
        with tfrf_io.held_stderr() as held:
            os.write(2, b"why it failed\n")
            raise RuntimeError("conversion failed")
    assert capfd.readouterr().err == "why it failed\n" and held.text == "why it failed\n"
    tfrf_io.set_verbose(True)
    try:
        with tfrf_io.held_stderr():
            os.write(2, b"verbose\n")
    finally:
        tfrf_io.set_verbose(False)
    assert capfd.readouterr().err == "verbose\n"


def test_verbose_option_and_tensorflow_log_level(monkeypatch):
    parser = build_parser()
    assert parser.parse_args(["--verbose", "summary"]).verbose
    assert parser.parse_args(["summary", "--verbose"]).verbose
    assert parser.parse_args(["export", "tflite", "--out", "f.tflite", "--verbose"]).verbose
    assert not getattr(parser.parse_args(["summary"]), "verbose", False)
    for argv, preset, expected in [(["generate"], None, "3"), (["generate", "--verbose"], None, None),
                                   (["generate"], "1", "1")]:
        if preset is None:
            monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
        else:
            monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", preset)
        with pytest.raises(SystemExit):  # generate without its required arguments
            cli_main(argv)
        assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == expected, argv
