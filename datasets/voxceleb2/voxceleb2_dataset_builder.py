"""VoxCeleb2 for facial expression transfer: face crops with RGB 68-landmark drawings.

Chung, Nagrani, Zisserman, "VoxCeleb2: Deep Speaker Recognition", Interspeech 2018; used for
facial expression transfer by Lu et al., AAAI 2022. Eight frames are sampled per clip; the
68 landmarks of a frame come from a precomputed `.npy` beside the clip or from MediaPipe face
mesh (`tfrf.pose.face`); the face is cropped from the landmarks' box with a margin, resized, and
its pose is the landmark drawing.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator, List, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfrf.datasets import view_common
from tfrf.pose import face

RAW_SPLITS = {"train": os.path.join("dev", "mp4"), "test": os.path.join("test", "mp4")}
LANDMARK_SOURCES = ("auto", "precomputed", "mediapipe")


@dataclasses.dataclass(eq=False)
class VoxCelebConfig(view_common.ViewConfig):
    """VoxCeleb2 preparation.

    Attributes:
        frames_per_video: frames sampled per clip, evenly spaced (all frames of shorter clips).
        margin: fraction of the landmarks' box side added on every side of the face crop.
        landmark_source: "precomputed" (a `NNNNN.npy` beside each clip, float [T, 68, 2]
            (x, y) pixels per frame, NaN rows for frames without a face), "mediapipe"
            (detected), or "auto" (the `.npy` where there is one, MediaPipe elsewhere).
    """

    frames_per_video: int = 8
    margin: float = 0.25
    landmark_source: str = "auto"


def sample_frame_indices(num_frames: int, count: int) -> np.ndarray:
    """`count` evenly spaced frame indices of a clip of `num_frames` (first and last included)."""
    if num_frames <= count:
        return np.arange(num_frames)
    return np.unique(np.rint(np.linspace(0, num_frames - 1, count)).astype(np.int64))


def read_video_frames(path: str) -> np.ndarray:
    """All frames of a video: uint8 [T, H, W, 3] RGB, through imageio's ffmpeg plugin.

    Needs `imageio` and `imageio-ffmpeg` (which ships an ffmpeg binary). Raises whatever the
    decoder raises for an unreadable file.
    """
    try:
        import imageio.v2 as imageio
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading VoxCeleb2 videos needs imageio and imageio-ffmpeg: "
                          "pip install imageio==2.38.1 imageio-ffmpeg==0.8.1") from error
    with imageio.get_reader(path, format="ffmpeg") as reader:
        frames = [np.asarray(frame, dtype=np.uint8)[..., :3] for frame in reader]
    if not frames:
        raise ValueError(f"{path} holds no frames")
    return np.stack(frames)


class Voxceleb2(view_common.ViewBuilder):
    """VoxCeleb2 face crops and landmark drawings, 8 frames per clip, grouped by video."""

    pkg_dir_path = epath.Path(__file__).parent  # README.md and CITATIONS.bib live here
    VIEW_TABLE = {"image": "image", "pose": "pose", "group": "group", "pose_encoder": "landmarks68"}
    BUILDER_CONFIGS = [
        VoxCelebConfig(name="256", description="256x256 face crops, 8 frames per clip.", image_size=256),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    VoxCeleb2 must be requested from its authors and downloaded by hand. Place the videos as
    distributed (identities of dev and test are disjoint):

        <manual_dir>/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4 ...
        <manual_dir>/test/mp4/id00017/01dfn2spqyE/00001.mp4 ...

    Optionally put precomputed landmarks beside each clip, `00001.npy`, float [T, 68, 2]
    (x, y) pixels per frame in the iBUG-68 order (NaN rows where there is no face). Clips
    without one are processed with MediaPipe face mesh (pip install mediapipe==0.10.14).
    Reading mp4 needs imageio and imageio-ffmpeg.
    """

    # Pluggable video reader: path -> uint8 [T, H, W, 3]; errors mean "unreadable video".
    read_video = staticmethod(read_video_frames)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "VoxCeleb2 face crops (the 68 landmarks' box plus a margin, resized), 8 frames per "
                "clip, with the RGB drawing of the landmarks as the pose (jaw, brows, nose, eyes, "
                "lips in distinct colours) and the landmarks in crop pixels. The tuple group is "
                "the (identity, video) pair; train (dev) and test identities are disjoint."
            ),
            features=tfds.features.FeaturesDict({
                "image": self.image_feature(),
                "pose": self.image_feature(),
                "landmarks": tfds.features.Tensor(shape=(face.NUM_LANDMARKS, 2), dtype=np.float32),
                "group": np.int64,
                "frame": np.int64,
                "identity": tfds.features.Text(),
                "video": tfds.features.Text(),
                "clip": tfds.features.Text(),
                "key": tfds.features.Text(),
            }),
            homepage="https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.landmark_source not in LANDMARK_SOURCES:
            raise ValueError(f"{self.name}: landmark_source must be one of {LANDMARK_SOURCES}, got {config.landmark_source!r}")
        roots = {split: view_common.manual_file(dl_manager, folder, self.name, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
                 for split, folder in RAW_SPLITS.items()}
        clips = {split: list_clips(root) for split, root in roots.items()}
        identities = {split: {identity for identity, _, _ in split_clips} for split, split_clips in clips.items()}
        shared = identities["train"] & identities["test"]
        if shared:
            raise ValueError(f"{self.name}: dev and test share identities, e.g. {sorted(shared)[0]!r}")
        return {split: self._generate_examples(split, roots[split], clips[split]) for split in RAW_SPLITS}

    def _generate_examples(self, split: str, root: str, clips: List[Tuple[str, str, str]]) -> Iterator[Tuple[str, dict]]:
        config = self.builder_config
        skips = self.skip_log(split)
        groups = view_common.index_of([f"{identity}/{video}" for identity, video, _ in clips])
        landmarker: Optional[face.MediaPipeFaceLandmarker] = None
        num_examples = 0
        try:
            for identity, video, clip in clips:
                path = os.path.join(root, identity, video, clip + ".mp4")
                try:
                    frames = self.read_video(path)
                except ImportError:
                    raise
                except Exception as error:  # any decoder failure: skip the clip, keep building
                    skips.skip("unreadable videos", f"{path}: {type(error).__name__}: {error}")
                    continue
                landmarks = self._precomputed_landmarks(path, frames.shape[0], skips)
                if landmarks is False:
                    continue
                if landmarks is None and landmarker is None:
                    landmarker = face.MediaPipeFaceLandmarker(static_image_mode=True)
                for index in sample_frame_indices(frames.shape[0], config.frames_per_video):
                    frame = frames[index]
                    points = landmarks[index] if landmarks is not None else landmarker(frame)
                    if points is None or not np.all(np.isfinite(points)):
                        skips.skip("frames without a face", f"{path} frame {index}", warn=False)
                        continue
                    crop, moved = face.crop_face(frame, points, config.image_size, config.margin)
                    key = f"{identity}/{video}/{clip}/{index:05d}"
                    num_examples += 1
                    yield key, {
                        "image": crop,
                        "pose": face.draw_landmarks(moved, config.image_size, config.image_size),
                        "landmarks": moved,
                        "group": groups[f"{identity}/{video}"],
                        "frame": int(index),
                        "identity": identity,
                        "video": video,
                        "clip": clip,
                        "key": key,
                    }
        finally:
            if landmarker is not None:
                landmarker.close()
        if not num_examples:
            raise ValueError(f"{self.name}/{split}: no usable frame in {len(clips)} clips under {root} ({skips.summary()})")

    def _precomputed_landmarks(self, video_path: str, num_frames: int, skips: view_common.SkipLog):
        """[T, 68, 2] landmarks from the `.npy` beside the clip; None to detect them instead;
        False when the clip is skipped (unusable landmark file, or none where one is required)."""
        source = self.builder_config.landmark_source
        path = os.path.splitext(video_path)[0] + ".npy"
        if source == "mediapipe" or (source == "auto" and not os.path.exists(path)):
            return None
        if not os.path.exists(path):
            skips.skip("videos without a landmark file", path)
            return False
        try:
            landmarks = np.load(path, allow_pickle=False)
        except Exception as error:  # a truncated or foreign file: skip the clip
            skips.skip("unreadable landmark files", f"{path}: {type(error).__name__}: {error}")
            return False
        if landmarks.ndim != 3 or landmarks.shape[0] != num_frames or landmarks.shape[1] != face.NUM_LANDMARKS \
                or landmarks.shape[2] < 2:
            skips.skip("landmark files not matching their video",
                       f"{path} has shape {landmarks.shape}, expected [{num_frames}, 68, 2] for {num_frames} frames")
            return False
        return landmarks[..., :2].astype(np.float64)


def list_clips(root: str) -> List[Tuple[str, str, str]]:
    """(identity, video, clip) of every `identity/video/clip.mp4` under `root`, sorted."""
    clips = []
    for identity in sorted(os.listdir(root)):
        identity_dir = os.path.join(root, identity)
        if not os.path.isdir(identity_dir):
            continue
        for video in sorted(os.listdir(identity_dir)):
            video_dir = os.path.join(identity_dir, video)
            if not os.path.isdir(video_dir):
                continue
            for name in sorted(os.listdir(video_dir)):
                if name.endswith(".mp4"):
                    clips.append((identity, video, name[:-len(".mp4")]))
    return clips
