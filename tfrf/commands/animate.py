"""`tfrf animate`: animate a face from K source photos with a driving video or landmarks.

    tfrf animate --model face.tflite --sources s1.jpg s2.jpg \\
        --driving driving.mp4|landmarks.npy --out out.mp4|out.gif

Landmarks come from MediaPipe face mesh (optional dependency mediapipe==0.10.14) unless given:
`--source-landmarks` (.npy [68, 2] per source) and a driving `.npy` [T, 68, 2]. The library
half is `tfrf.animate`.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("animate", help="animate a face with the TFLite face model",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the .tflite from `tfrf export tflite --preset voxceleb2`")
    parser.add_argument("--sources", nargs="+", required=True, help="K source photos of one face")
    parser.add_argument("--source-landmarks", nargs="+",
                        help=".npy [68, 2] (x, y) per source, same order (default: MediaPipe on each photo)")
    parser.add_argument("--driving", required=True, help="a driving video, or a .npy of [T, 68, 2] landmarks")
    parser.add_argument("--out", required=True, help="output .gif or .mp4")
    parser.add_argument("--fps", type=float, help="output frame rate (default: the driving video's, else 25)")
    parser.add_argument("--margin", type=float, default=0.25, help="face crop margin (default 0.25, as the dataset)")
    parser.add_argument("--relative", action="store_true",
                        help="apply the driving motion relative to its first frame to the first source's face")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from tfrf.animate import animate

    landmarks = None
    if args.source_landmarks is not None:
        if len(args.source_landmarks) != len(args.sources):
            raise SystemExit(f"--source-landmarks gives {len(args.source_landmarks)} files for "
                             f"{len(args.sources)} --sources")
        landmarks = [np.load(path) for path in args.source_landmarks]
    result = animate(args.model, args.sources, args.driving, args.out, source_landmarks=landmarks, fps=args.fps,
                     margin=args.margin, relative=args.relative, num_threads=args.threads,
                     progress=not args.no_progress)
    print(f"wrote {result.path}: {result.frames} frames at {result.video_fps:g} fps; model {result.fps:.1f} fps, "
          f"pipeline {result.overall_fps:.1f} fps; {result.missing_faces} driving frames without a face")
    return 0
