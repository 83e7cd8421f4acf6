"""`tfrf animate`: a video of a face or a person from K source photos and a driving sequence.

    tfrf animate --model face.tflite --sources s1.jpg s2.jpg \\
        --driving driving.mp4|landmarks.npy --out out.mp4|out.gif
    tfrf animate --run RUN --sources a.jpg b.jpg --driving dance.mp4|poses.json --out out.mp4|out.gif

Faces (`--model`, the TFLite face model): landmarks from MediaPipe face mesh unless given,
`--source-landmarks` (.npy [68, 2] (x, y) per source) and a driving `.npy` [T, 68, 2].

People (`--run RUN`, or `--weights W` with `--config C` / `--preset NAME`; a keypoint preset such
as deepfashion or market1501): source keypoints from MediaPipe pose (or `--source-poses`, one
pose JSON per source as `tfrf generate` takes), driving poses from MediaPipe pose on every frame
of a driving video, or from a poses JSON:

    {"height": H, "width": W, "fps": 25, "frames": [[[y, x], ... 18 pairs], null, ...]}

(y, x) in pixels of an H x W driving frame, CMU OpenPose-18 order (0 nose, 1 neck, 2-4 right
shoulder/elbow/wrist, 5-7 left, 8-10 right hip/knee/ankle, 11-13 left, 14 right eye, 15 left eye,
16 right ear, 17 left ear), -1 for a missing keypoint; "fps" is optional. A frame that is null or
has no keypoint, like a video frame where nobody is found, reuses the last pose and is counted;
when no driving frame has a face or person, nothing is written and the command fails (status 2).

Photos are read upright (EXIF orientation applied). The library half is `tfrf.animation`
(`face`, `person` and the shared frame loop in `video`).
"""
from __future__ import annotations

import argparse

from tfrf.pose import keypoint_detection

FACE_ONLY = ("source_landmarks", "relative")
PEOPLE_ONLY = ("source_poses",)


def register(subparsers) -> None:
    parser = subparsers.add_parser("animate", help="animate a face (TFLite model) or a person (a run) from photos",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", required=True, help="K source photos of one face or person")
    parser.add_argument("--driving", required=True,
                        help="a driving video or a folder of frames (in name order); or, for faces, a .npy of "
                             "[T, 68, 2] landmarks, for people a poses .json (format above; tfrf pose writes both)")
    parser.add_argument("--out", required=True, help="output .gif or .mp4")
    parser.add_argument("--fps", type=float, help="output frame rate (default: the driving video's, else 25)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    faces = parser.add_argument_group("faces")
    faces.add_argument("--model", help="the .tflite from `tfrf export tflite --preset voxceleb2`")
    faces.add_argument("--source-landmarks", nargs="+",
                       help=".npy [68, 2] (x, y) per source, same order (default: MediaPipe on each photo)")
    faces.add_argument("--margin", type=float, default=0.25, help="face crop margin (default 0.25, as the dataset)")
    faces.add_argument("--relative", action="store_true",
                       help="apply the driving motion relative to its first frame to the first source's face")
    faces.add_argument("--threads", type=int, default=2, help="interpreter threads (default 2)")

    from tfrf import runs

    runs.add_model_arguments(parser)  # people: --run | --weights with --config / --preset
    people = parser.add_argument_group("people")
    people.add_argument("--source-poses", nargs="+",
                        help="pose JSONs of the sources, same order (default: MediaPipe on each photo)")
    people.add_argument("--fit", default="pad", choices=("pad", "stretch"),
                        help="how photos and driving frames are fitted to the model's size (default pad)")
    keypoint_detection.add_keypoint_threshold_argument(people)
    parser.set_defaults(func=run)


def _misused(args: argparse.Namespace, names) -> list:
    return ["--" + name.replace("_", "-") for name in names if getattr(args, name)]


def run(args: argparse.Namespace) -> int:
    import os

    from tfrf.animation.video import OUTPUT_SUFFIXES

    if os.path.splitext(args.out)[1].lower() not in OUTPUT_SUFFIXES:  # before any model is loaded
        raise ValueError(f"output {args.out} must end with one of {OUTPUT_SUFFIXES}")
    people_model = bool(args.run or args.weights)
    if args.model and people_model:
        raise ValueError("give --model (a face .tflite) or --run/--weights (a people model), not both")
    if not args.model and not people_model:
        raise ValueError("no model: --model FACE.tflite animates a face, --run RUN (or --weights W with "
                         "--config C / --preset NAME) a person")
    misused = _misused(args, PEOPLE_ONLY if args.model else FACE_ONLY)
    if misused:
        raise ValueError(f"{', '.join(misused)} only apply to {'people' if args.model else 'face'} animation")
    return _animate_face(args) if args.model else _animate_person(args)


def _animate_face(args: argparse.Namespace) -> int:
    import numpy as np

    from tfrf.animation.face import animate

    landmarks = None
    if args.source_landmarks is not None:
        if len(args.source_landmarks) != len(args.sources):
            raise ValueError(f"--source-landmarks gives {len(args.source_landmarks)} files for "
                             f"{len(args.sources)} --sources")
        landmarks = [np.load(path) for path in args.source_landmarks]
    result = animate(args.model, args.sources, args.driving, args.out, source_landmarks=landmarks, fps=args.fps,
                     margin=args.margin, relative=args.relative, num_threads=args.threads,
                     progress=not args.no_progress)
    _report(result, "a face")
    return 0


def load_people_generator(args: argparse.Namespace):
    """The people generator of `--run` / `--weights` (`tfrf.runs`), refused unless it takes
    keypoint heatmaps."""
    from tfrf import runs
    from tfrf.animation.person import check_people_model

    config, weights = runs.resolve_model(args)
    check_people_model(config)
    return runs.load_generator(config, weights)


def _animate_person(args: argparse.Namespace) -> int:
    from tfrf.animation.person import animate_person

    if args.source_poses is not None and len(args.source_poses) != len(args.sources):
        raise ValueError(f"--source-poses gives {len(args.source_poses)} poses for {len(args.sources)} --sources")
    generator = load_people_generator(args)
    result = animate_person(generator, args.sources, args.driving, args.out, source_poses=args.source_poses,
                            fps=args.fps, fit=args.fit, threshold=args.keypoint_threshold,
                            confidence=args.detection_confidence,
                            progress=not args.no_progress)
    _report(result, "a person")
    return 0


def _report(result, what: str) -> None:
    print(f"wrote {result.path}: {result.frames} frames at {result.video_fps:g} fps; model {result.fps:.1f} fps, "
          f"pipeline {result.overall_fps:.1f} fps; {result.missing_frames} driving frames without {what}"
          + (f"; runtime {result.runtime}" if getattr(result, "runtime", None) else ""))
