"""`tfrf generate`: a person in a new pose from K photos of them, with a trained generator.

    tfrf generate --run runs/df --sources a.jpg b.jpg --target-pose c.jpg|pose.json --out out.png|out.jpg
    tfrf generate --preset deepfashion --weights CKPT --sources a.jpg b.jpg \\
        --target-pose c.jpg|pose.json --out out.png

Every photo is read upright (`tfrf.photos.read_photo`: EXIF orientation applied) and fitted to
the preset's size (padded by default, as DeepFashion's 176-px-wide images are padded to 256).
Keypoints come from a pose JSON (`tfrf.pose.keypoints.save_pose_json`: {"keypoints": [[y, x] x
18], "image_size": [h, w]}) or, for an image, from MediaPipe pose (optional dependency
mediapipe==0.10.14; `--keypoint-threshold` is the landmark visibility a keypoint needs). Only
keypoint presets (18 pose channels) apply.

The library half is `tfrf.inference`; `run` is the thin command.
"""
from __future__ import annotations

import argparse

from tfrf.inference import FIT_MODES
from tfrf.pose import keypoint_detection


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
    parser.add_argument("--out", required=True,
                        help="the image to write, in the format its extension names: .png, .jpg/.jpeg or .webp")
    parser.add_argument("--fit", default="pad", choices=FIT_MODES,
                        help="how photos are fitted to the preset's size (default pad, with white)")
    keypoint_detection.add_keypoint_threshold_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfrf import inference, runs
    from tfrf.io import atomic_save_image, image_format

    image_format(args.out)  # an unknown extension fails before any work
    config, weights = runs.resolve_model(args)
    inference.check_keypoint_model(config)
    if args.source_poses is not None and len(args.source_poses) != len(args.sources):
        raise ValueError(f"--source-poses gives {len(args.source_poses)} poses for {len(args.sources)} --sources")
    size = config.image_size
    pose_paths = args.source_poses or [None] * len(args.sources)
    threshold, confidence = args.keypoint_threshold, args.detection_confidence
    sources = [inference.load_source(image, size, pose, args.fit, threshold, confidence)
               for image, pose in zip(args.sources, pose_paths)]
    target = inference.load_pose(args.target_pose, size, args.fit, threshold, confidence)
    inputs = inference.build_inputs([image for image, _ in sources], [points for _, points in sources], target)
    generator = runs.load_generator(config, weights)
    atomic_save_image(args.out, inference.generate_image(generator, inputs))
    print(f"wrote {args.out} ({size[0]}x{size[1]}, K = {len(sources)})")
    return 0
