"""`tfrf pose`: the body keypoints or face landmarks of your own photo, video or folder of frames,
written as the files `tfrf generate` and `tfrf animate` take, with an overlay to check them.

    tfrf pose me.jpg --out me.json [--overlay me_pose.png]         # --target-pose / --source-poses
    tfrf pose dance.mp4|frames/ --out dance.json [--overlay seen.mp4|seen.gif]   # animate --driving
    tfrf pose me.jpg --face --out me.npy                           # animate --source-landmarks
    tfrf pose talk.mp4|frames/ --face --out talk.npy               # animate --model ... --driving

A photo gives one pose JSON, {"keypoints": [[y, x] x 18], "image_size": [h, w]} (CMU
OpenPose-18 order, -1 where missing); a video or a folder of frames (image files sorted by name,
numbers compared as numbers) gives a driving poses JSON, {"height": H, "width": W, "fps": F,
"frames": [[[y, x] x 18] or null, ...]}, null where nobody is found. With --face: 68 face
landmarks (x, y), a .npy [68, 2] for a photo, [T, 68, 2] for a sequence with NaN frames where
no face is found. docs/pose_formats.md describes every file.

Detection is MediaPipe's (mediapipe==0.10.14): a photo as `tfrf generate` and `tfrf animate`
detect one, a sequence as `tfrf animate --driving` tracks one, so the file gives the same
result as the photo or sequence itself, and can be corrected by hand in between. The overlay
draws the keypoints over the photo (PNG/JPEG) or every frame (MP4/GIF): limbs and points of the
person's right side orange, left side blue, the middle green; face parts in their colours.
"""
from __future__ import annotations

import argparse

from tfrf.commands.common import documented_parser
from tfrf.pose import keypoint_detection


def register(subparsers) -> None:
    parser = documented_parser(subparsers, "pose", "keypoints or face landmarks of a photo, video or folder",
                               __doc__)
    parser.add_argument("input", metavar="PHOTO|VIDEO|FOLDER",
                        help="a photo, a video (.mp4, .mov, ...) or a folder of frames")
    parser.add_argument("--out", required=True,
                        help="the .json to write (a .npy with --face)")
    parser.add_argument("--overlay", metavar="IMAGE|VIDEO",
                        help="also draw what was found over the photo (.png/.jpg) or every frame (.mp4/.gif)")
    parser.add_argument("--face", action="store_true",
                        help="68 face landmarks (x, y) instead of the 18 body keypoints")
    keypoint_detection.add_keypoint_threshold_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfrf.pose.extract import extract

    result = extract(args.input, args.out, args.overlay, face=args.face, threshold=args.keypoint_threshold,
                     confidence=args.detection_confidence)
    size = f"{result.width}x{result.height}"
    what = "face" if args.face else "person"
    if not result.sequence:
        found = "68 face landmarks" if args.face else f"{result.found} of 18 keypoints"
        print(f"wrote {result.out}: {found} of the {what} in {args.input} ({size})")
    else:
        rate = f" at {result.fps:g} fps" if result.fps else ""
        print(f"wrote {result.out}: {result.frames} frames of {args.input} ({size}{rate}); "
              f"{result.missing} frames without a {what}")
    if result.overlay:
        print(f"wrote {result.overlay}")
    return 0
