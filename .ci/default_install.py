"""README command 1's install (`pip install -e .`, no extras) reads photos and writes images and
videos: run by .ci/run in a fresh virtual environment with nothing else installed.

A tiny DeepFashion generator (random weights) is saved through the public API; then, through the
command line as a user runs it, `tfrf generate` reads a JPEG photo with an EXIF rotation and a pose
JSON and writes a JPEG, `tfrf animate` writes an MP4 from a driving poses JSON, and a photo given
where keypoints must be detected (MediaPipe is an extra) stops with one line naming the
`pip install -e ".[mediapipe]"` to run. Exits non-zero, saying what failed, otherwise."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

import tfrf
from tfrf.models import Generator
from tfrf.pose.keypoints import save_pose_json

SIZE = 64


def run(*argv, expect=0):
    done = subprocess.run(["tfrf", *argv], capture_output=True, text=True)
    if done.returncode != expect:
        sys.exit(f"tfrf {' '.join(argv)}: exit {done.returncode}, expected {expect}\n{done.stdout}\n{done.stderr}")
    return done


def main() -> None:
    work = tempfile.mkdtemp(prefix="tfrf-default-install-")
    config = tfrf.ModelConfig.preset("deepfashion", image_height=SIZE, image_width=SIZE, width_multiplier=0.125)
    generator = Generator(config)
    generator(generator.dummy_inputs())
    weights, config_path = os.path.join(work, "g.weights.h5"), os.path.join(work, "config.json")
    generator.save_weights(weights)
    with open(config_path, "w", encoding="utf-8") as stream:
        stream.write(config.to_json())
    # A 48 x 80 (w x h) photo stored sideways (80 x 48) with EXIF orientation 6: read upright.
    rng = np.random.default_rng(0)
    stored = Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = os.path.join(work, "photo.jpg")
    stored.save(photo, "JPEG", exif=exif)
    keypoints = np.full((18, 2), -1.0, np.float32)
    keypoints[[0, 1, 2, 5]] = [[10, 24], [25, 24], [25, 12], [25, 36]]
    pose = os.path.join(work, "pose.json")
    save_pose_json(pose, keypoints, (80, 48))
    model = ["--config", config_path, "--weights", weights]

    out = os.path.join(work, "out.jpg")
    run("generate", *model, "--sources", photo, "--source-poses", pose, "--target-pose", pose, "--out", out)
    with Image.open(out) as image:
        if image.format != "JPEG" or image.size != (SIZE, SIZE):
            sys.exit(f"tfrf generate wrote {image.format} {image.size}, expected JPEG {(SIZE, SIZE)}")

    driving = os.path.join(work, "driving.json")
    with open(driving, "w", encoding="utf-8") as stream:
        json.dump({"height": 80, "width": 48, "fps": 10, "frames": [keypoints.tolist(), None, keypoints.tolist()]},
                  stream)
    video = os.path.join(work, "out.mp4")
    run("animate", *model, "--sources", photo, "--source-poses", pose, "--driving", driving, "--out", video,
        "--no-progress")
    import imageio.v2 as imageio

    with imageio.get_reader(video) as reader:
        frames = [frame for frame in reader]
    if len(frames) != 3 or frames[0].shape[:2] != (SIZE, SIZE):
        sys.exit(f"tfrf animate wrote {len(frames)} frames of {frames[0].shape if frames else None}, expected 3")

    failed = run("generate", *model, "--sources", photo, "--target-pose", pose, "--out", out, expect=2)
    lines = failed.stderr.strip().splitlines()
    if len(lines) != 1 or 'pip install -e ".[mediapipe]"' not in lines[0]:
        sys.exit(f"without MediaPipe, expected one line naming pip install -e \".[mediapipe]\", got:\n{failed.stderr}")
    print(f"default install: photo -> JPEG, poses -> MP4 ({len(frames)} frames), detection names its extra: ok")


if __name__ == "__main__":
    main()
