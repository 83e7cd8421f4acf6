"""`tfrf generate`: a person in a new pose from K photos of them, with a trained generator.

    tfrf generate --run runs/df --sources a.jpg b.jpg --target-pose c.jpg|pose.json --out out.png
    tfrf generate --preset deepfashion --weights CKPT --sources a.jpg b.jpg \\
        --target-pose c.jpg|pose.json --out out.png

Every photo is read upright (`tfrf.photos.read_photo`: EXIF orientation applied) and fitted to
the preset's size (padded by default, as DeepFashion's 176-px-wide images are padded to 256).
Keypoints come from a pose JSON (`tfrf.pose.keypoints.save_pose_json`: {"keypoints": [[y, x] x
18], "image_size": [h, w]}) or, for an image, from MediaPipe pose (optional dependency
mediapipe==0.10.14; `--keypoint-threshold` is the landmark visibility a keypoint needs). Only
keypoint presets (18 pose channels) apply.

The library half (`load_pose`, `load_source`, `build_inputs`, `generate_image`) is importable;
`run` is the thin command.
"""
from __future__ import annotations

import argparse
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrf.config import ModelConfig
from tfrf.io import atomic_save_image
from tfrf.photos import read_photo
from tfrf.pose import keypoint_detection
from tfrf.pose import keypoints as keypoints_lib

POSE_SUFFIX = ".json"
FIT_MODES = ("pad", "stretch")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a person image in a target pose from K source photos",
        description=__doc__.split("\n\n")[0],
    )
    from tfrf import runs

    runs.add_model_arguments(parser, default_preset="deepfashion")  # --run | --weights with --config/--preset
    parser.add_argument("--sources", nargs="+", required=True, help="K source photos of one person")
    parser.add_argument("--source-poses", nargs="+",
                        help="pose JSONs of the sources, in the same order (default: MediaPipe on each photo)")
    parser.add_argument("--target-pose", required=True, help="a pose JSON, or a photo whose pose to take")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--fit", default="pad", choices=FIT_MODES,
                        help="how photos are fitted to the preset's size (default pad, with white)")
    keypoint_detection.add_keypoint_threshold_argument(parser)
    parser.set_defaults(func=run)


def _detect(image: np.ndarray, path: str, threshold: float) -> np.ndarray:
    try:
        return keypoint_detection.extract_keypoints(image, threshold)
    except keypoint_detection.NoPersonFoundError as error:
        raise keypoint_detection.NoPersonFoundError(f"{path}: {error}") from None


def load_pose(path: str, size: Sequence[int], fit: str = "pad",
              threshold: float = keypoint_detection.DEFAULT_THRESHOLD) -> np.ndarray:
    """Keypoints [18, 2] (y, x) in an image of `size` (H, W): from a pose JSON, or detected
    with MediaPipe in a photo (keypoints at least `threshold` visible), then fitted as the
    photo would be."""
    if path.lower().endswith(POSE_SUFFIX):
        keypoints, image_size = keypoints_lib.load_pose_json(path)
    else:
        image = read_photo(path)
        keypoints, image_size = _detect(image, path, threshold), image.shape[:2]
    return keypoints_lib.rescale_keypoints(keypoints, image_size, size, fit)


def load_source(image_path: str, size: Sequence[int], pose_path: Optional[str] = None,
                fit: str = "pad", threshold: float = keypoint_detection.DEFAULT_THRESHOLD
                ) -> Tuple[np.ndarray, np.ndarray]:
    """A source photo fitted to `size`: (uint8 [H, W, 3], keypoints [18, 2] in its pixels)."""
    image = read_photo(image_path)
    if pose_path is None:
        keypoints, image_size = _detect(image, image_path, threshold), image.shape[:2]
    else:
        keypoints, image_size = keypoints_lib.load_pose_json(pose_path)
        if tuple(image_size) != image.shape[:2]:
            raise ValueError(
                f"{pose_path} is a pose in a {image_size[1]}x{image_size[0]} image, but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (w x h)"
            )
    fitted, transform = keypoints_lib.fit_image(image, size, fit)
    return fitted, keypoints_lib.transform_keypoints(keypoints, transform)


def build_inputs(source_images: Sequence[np.ndarray], source_keypoints: Sequence[np.ndarray],
                 target_keypoints: np.ndarray) -> Dict[str, np.ndarray]:
    """The generator's inputs for one example (B = 1): images in [-1, 1], heatmap poses."""
    if not len(source_images) or len(source_images) != len(source_keypoints):
        raise ValueError(
            f"need K >= 1 sources with one pose each, got {len(source_images)} images and {len(source_keypoints)} poses"
        )
    height, width = source_images[0].shape[:2]
    images = np.stack(source_images).astype(np.float32) / 127.5 - 1.0
    poses = keypoints_lib.keypoints_to_heatmaps(np.stack(source_keypoints), height, width).numpy()
    target = keypoints_lib.keypoints_to_heatmaps(target_keypoints, height, width).numpy()
    return {"source_images": images[None], "source_poses": poses[None], "target_pose": target[None]}


def load_generator(config: ModelConfig, weights: str):
    """A generator for `config`, built, with `weights` (anything `tfrf.runs.load_weights` takes)."""
    from tfrf import runs

    return runs.load_generator(config, weights)


def generate_image(generator, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """Runs the generator: uint8 [H, W, 3]."""
    image = generator(inputs, training=False)[0].numpy()
    return np.clip(np.rint((image + 1.0) * 127.5), 0, 255).astype(np.uint8)




def resolve_config(preset: str, config_path: Optional[str]) -> ModelConfig:
    """The preset, or the config at `config_path`; it must take keypoint poses."""
    from tfrf import runs

    config = runs.read_model_config(config_path) if config_path else ModelConfig.preset(preset)
    return check_keypoint_config(config)


def check_keypoint_config(config: ModelConfig) -> ModelConfig:
    if config.pose_channels != keypoints_lib.NUM_KEYPOINTS:
        raise ValueError(
            f"tfrf generate takes keypoint poses ({keypoints_lib.NUM_KEYPOINTS} channels); config "
            f"{config.name!r} has {config.pose_channels} pose channels"
        )
    return config


def run(args: argparse.Namespace) -> int:
    from tfrf import runs

    config, weights = runs.resolve_model(args)
    check_keypoint_config(config)
    if args.source_poses is not None and len(args.source_poses) != len(args.sources):
        raise ValueError(f"--source-poses gives {len(args.source_poses)} poses for {len(args.sources)} --sources")
    size = config.image_size
    pose_paths = args.source_poses or [None] * len(args.sources)
    threshold = args.keypoint_threshold
    sources = [load_source(image, size, pose, args.fit, threshold) for image, pose in zip(args.sources, pose_paths)]
    target = load_pose(args.target_pose, size, args.fit, threshold)
    inputs = build_inputs([image for image, _ in sources], [points for _, points in sources], target)
    generator = load_generator(config, weights)
    atomic_save_image(args.out, generate_image(generator, inputs))
    print(f"wrote {args.out} ({size[0]}x{size[1]}, K = {len(sources)})")
    return 0
