"""What the DeepFashion In-shop and Market-1501 builders share: person images with OpenPose-18
keypoints, grouped by identity.

Both datasets come, as the pose-transfer literature distributes them, as image folders per
split plus a `name:keypoints_y:keypoints_x` annotation CSV per split. A prepared split stores
each image once, fitted to the config's size, with its keypoints in that image's pixels, its
identity and whether it may serve as a target; K+1 tuples are drawn in the input pipeline
(`tfrf.data.pipeline`), so any K works without rebuilding. The fixed, seeded test tuples are
written beside the prepared data (`test_tuples_k{K}.npy`) so that everyone scores the same ones.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from tfrf.datasets.prepared import PreparedDataMixin
from tfrf.pose import keypoints as keypoints_lib

logger = logging.getLogger("tfrf.datasets")

VIEW_TABLE = {
    "image": "image",
    "pose": "keypoints",
    "group": "identity",
    "targets_ok": "target_ok",
    "pose_encoder": "keypoints18",
}


@dataclasses.dataclass(eq=False)
class PeopleConfig(tfds.core.BuilderConfig):
    """Output geometry of a person-image dataset.

    Attributes:
        height, width: size of the stored images.
        fit_mode: how raw images are fitted: "pad" (uniform scale, centred, padded) or
            "stretch".
        pad_value: grey level of the padding.
        encoding_format: "jpeg" (compact) or "png" (lossless).
        test_tuple_ks: the K for which fixed test tuples are written with the data.
        test_tuple_seed: their seed.
    """

    height: int = 256
    width: int = 256
    fit_mode: str = "pad"
    pad_value: int = 255
    encoding_format: str = "jpeg"
    test_tuple_ks: Tuple[int, ...] = (1, 2, 3, 4, 5)
    test_tuple_seed: int = 0


@dataclasses.dataclass(frozen=True)
class RawSplit:
    """Where a split lies in the manual directory."""

    image_dir: str
    annotation_csv: str


class PeopleBuilder(PreparedDataMixin, tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: subclasses set `RAW_SPLITS`, `RAW_SIZE` and `identity_of`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    VIEW_TABLE = VIEW_TABLE
    RAW_SPLITS: Dict[str, RawSplit] = {}
    RAW_SIZE: Tuple[int, int] = (0, 0)  # (h, w) of the raw images and of the CSV coordinates
    IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
    DESCRIPTION = ""
    HOMEPAGE = ""

    def __init__(self, *, file_format=None, **kwargs):
        # array_record gives random access (tfds.data_source): the images need not fit in RAM.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    # --- subclass hooks -----------------------------------------------------------------------

    @classmethod
    def identity_of(cls, name: str) -> Optional[int]:
        """The identity of image `name`; None for junk/distractor images (excluded)."""
        raise NotImplementedError

    # --- TFDS -----------------------------------------------------------------------------

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(
                    shape=(config.height, config.width, 3), encoding_format=config.encoding_format
                ),
                "keypoints": tfds.features.Tensor(shape=(keypoints_lib.NUM_KEYPOINTS, 2), dtype=np.float32),
                "identity": np.int64,
                "target_ok": np.bool_,
                "name": tfds.features.Text(),
            }),
            homepage=self.HOMEPAGE,
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = os.fspath(dl_manager.manual_dir)  # raises with the instructions if empty
        for split, raw in self.RAW_SPLITS.items():
            for part in (raw.image_dir, raw.annotation_csv):
                if not os.path.exists(os.path.join(manual_dir, part)):
                    raise FileNotFoundError(
                        f"{self.name}: {os.path.join(manual_dir, part)} is missing (split {split!r}). "
                        f"Expected layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
                    )
        self._check_disjoint_identities(manual_dir)
        return {split: self._generate_examples(manual_dir, split) for split in self.RAW_SPLITS}

    def _check_disjoint_identities(self, manual_dir: str) -> None:
        identities = {}
        for split, raw in self.RAW_SPLITS.items():
            names = self._image_names(os.path.join(manual_dir, raw.image_dir))
            identities[split] = {self.identity_of(name) for name in names} - {None}
        splits = list(identities)
        for position, first in enumerate(splits):
            for second in splits[position + 1:]:
                shared = identities[first] & identities[second]
                if shared:
                    raise ValueError(
                        f"{self.name}: splits {first!r} and {second!r} share identities "
                        f"{sorted(shared)[:10]}; the dataset's split must be identity-disjoint"
                    )

    def _image_names(self, image_dir: str) -> Sequence[str]:
        return sorted(n for n in os.listdir(image_dir) if n.lower().endswith(self.IMAGE_SUFFIXES))

    def _generate_examples(self, manual_dir: str, split: str) -> Iterator[Tuple[str, dict]]:
        from PIL import Image

        config = self.builder_config
        raw = self.RAW_SPLITS[split]
        image_dir = os.path.join(manual_dir, raw.image_dir)
        csv_path = os.path.join(manual_dir, raw.annotation_csv)
        annotations = keypoints_lib.read_keypoint_csv(csv_path)
        skips = self.skip_log(split)
        sources_only = collections.Counter()  # kept, but never a target
        on_disk = set(self._image_names(image_dir))
        unannotated = len(on_disk - set(annotations))
        if unannotated:
            skips.skip("images without annotation", count=unannotated, warn=False)
        for name, raw_keypoints in annotations.items():
            identity = self.identity_of(name)
            if identity is None:
                skips.skip("junk or distractor identity", warn=False)
                continue
            path = os.path.join(image_dir, name)
            if name not in on_disk:
                raise FileNotFoundError(f"{self.name}: image {name!r} listed in {csv_path} is missing: {path}")
            try:
                with Image.open(path) as opened:
                    image = np.asarray(opened.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as error:  # PIL: truncated, corrupt, not an image
                skips.skip("unreadable images", f"{path}: {error}")
                continue
            if image.shape[:2] != tuple(self.RAW_SIZE):
                raise ValueError(
                    f"{self.name}: {path} is {image.shape[1]}x{image.shape[0]} (w x h); the annotations "
                    f"of {csv_path} are for {self.RAW_SIZE[1]}x{self.RAW_SIZE[0]} images"
                )
            fitted, transform = keypoints_lib.fit_image(
                image, (config.height, config.width), config.fit_mode, config.pad_value
            )
            has_shoulder, has_hip = keypoints_lib.shoulders_and_hips(raw_keypoints)
            if not has_shoulder:
                sources_only["not a target: no shoulder"] += 1
            elif not has_hip:
                sources_only["not a target: no hip"] += 1
            yield name, {
                "image": fitted,
                "keypoints": keypoints_lib.transform_keypoints(raw_keypoints, transform),
                "identity": identity,
                "target_ok": has_shoulder and has_hip,
                "name": name,
            }
        if sources_only:
            logger.info("%s/%s: kept as sources only: %s", self.name, split,
                        ", ".join(f"{count} {reason}" for reason, count in sorted(sources_only.items())))

def write_raw_split(root: str, raw: RawSplit, images: Dict[str, np.ndarray],
                    keypoints: Dict[str, np.ndarray], csv_names: Optional[Sequence[str]] = None) -> None:
    """Writes a split in the raw layout (image folder + annotation CSV), e.g. for dummy data.

    Args:
        root: the manual directory.
        raw: where the split goes.
        images: file name -> uint8 [h, w, 3] image (written as JPEG).
        keypoints: file name -> [18, 2] (y, x) keypoints of the raw image.
        csv_names: the names listed in the CSV, in order (default: all of `keypoints`).
    """
    from PIL import Image

    image_dir = os.path.join(root, raw.image_dir)
    os.makedirs(image_dir, exist_ok=True)
    for name, image in images.items():
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(os.path.join(image_dir, name), quality=75)
    names = list(keypoints) if csv_names is None else list(csv_names)
    keypoints_lib.write_keypoint_csv(os.path.join(root, raw.annotation_csv), {n: keypoints[n] for n in names})


def stick_figure(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """A random standing stick figure: (uint8 [h, w, 3] drawing on white, [18, 2] keypoints).

    The figure faces the camera, so its right side (indices 2-4, 8-10, 14 right eye, 16 right
    ear) is on the image's left, at smaller x.
    """
    template = np.array([  # (y, x) as fractions of the image, CMU OpenPose-18 order
        (0.12, 0.50), (0.22, 0.50), (0.23, 0.35), (0.38, 0.30), (0.52, 0.28), (0.23, 0.65),
        (0.38, 0.70), (0.52, 0.72), (0.52, 0.40), (0.70, 0.40), (0.88, 0.40), (0.52, 0.60),
        (0.70, 0.60), (0.88, 0.60), (0.10, 0.45), (0.10, 0.55), (0.11, 0.40), (0.11, 0.60),
    ])
    jitter = rng.normal(scale=0.02, size=template.shape)
    points = np.clip(template + jitter, 0.02, 0.98) * np.array([height - 1, width - 1])
    points = np.rint(points).astype(np.float32)
    white = np.full((height, width, 3), 255, dtype=np.uint8)
    return keypoints_lib.draw_skeleton(points, height, width, image=white), points


def write_dummy_data(builder_cls, root: str, names: Dict[str, Sequence[str]], seed: int = 0,
                     hide: Sequence[Tuple[str, str]] = ()) -> Dict[str, Dict[str, np.ndarray]]:
    """Writes stick-figure images in `builder_cls`'s raw layout (for dummy data and tests).

    Args:
        builder_cls: a `PeopleBuilder` subclass (gives `RAW_SPLITS` and `RAW_SIZE`).
        root: the manual directory to fill.
        names: split -> the image file names to write.
        seed: seed of the figures.
        hide: (image name, "shoulders" or "hips") pairs whose keypoints lose both shoulders
            or both hips in the CSV (such images are sources only).

    Returns:
        split -> {name: [18, 2] keypoints as written to the CSV}.
    """
    rng = np.random.default_rng(seed)
    hidden = {"shoulders": [2, 5], "hips": [8, 11]}
    written = {}
    for split, split_names in names.items():
        images, keypoints = {}, {}
        for name in split_names:
            images[name], keypoints[name] = stick_figure(rng, *builder_cls.RAW_SIZE)
        for name, part in hide:
            if name in keypoints:
                keypoints[name][hidden[part]] = keypoints_lib.MISSING
        write_raw_split(root, builder_cls.RAW_SPLITS[split], images, keypoints)
        written[split] = keypoints
    return written
