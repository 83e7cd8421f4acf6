"""Person detection on small photos: how many crops each detection strategy finds, and how many
images without a person it wrongly finds one in.

    python -m tfrf.benchmarks.small_photos [--folder CROPS/] [--empty-folder EMPTY/]

`--folder` takes a folder of person crops (e.g. Market-1501's `bounding_box_test/`, 64 x 128);
without it the crops are made from the photos of people that the installed packages ship
(scikit-image's `astronaut` and `camera`, Matplotlib's `grace_hopper`): a 1:2 crop of each person
at 64 x 128, 48 x 96, 40 x 80 and 32 x 64 pixels, plain, blurred, darkened, mirrored and saved
as JPEG at quality 35 (60 crops). Images without a person are uniform and noise images and
1:2 crops of scikit-image's texture and object photos at 64 x 128 (or `--empty-folder`).

Each row is a `tfrf.pose.keypoint_detection.PoseDetector` setting: MediaPipe at its default
confidence on the upsampled image only; with the padded-square pass; and down to a lower
detection confidence (`--detection-confidence`) with the geometric check. A crop counts as found
when the detector returns keypoints (a shoulder or a hip visible); "CMU sides" counts the found
crops whose left and right shoulders are on the sides CMU-18 order puts them, facing or not.
Needs mediapipe (and scikit-image for the built-in crops).
"""
from __future__ import annotations

import argparse
import io
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

CROP_SIZES = ((64, 128), (48, 96), (40, 80), (32, 64))
STRATEGIES = (
    ("MediaPipe, upsampled", dict(min_detection_confidence=0.5, pad=False)),
    ("+ padded square", dict(min_detection_confidence=0.5, pad=True)),
    ("+ confidence 0.3, checked", dict(min_detection_confidence=0.3, pad=True)),
    ("+ confidence 0.1, checked (default)", dict(min_detection_confidence=0.1, pad=True)),
    ("+ confidence 0.05, checked", dict(min_detection_confidence=0.05, pad=True)),
)


def _people() -> List[Tuple[np.ndarray, Tuple[int, int, int]]]:
    """Bundled photos of people with a 1:2 box (top, left, width) around each person."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    camera = np.stack([data.camera()] * 3, axis=-1)
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as photo:
        hopper = np.asarray(photo.convert("RGB"))
    return [(data.astronaut(), (0, 60, 256)), (hopper, (0, 96, 300)), (camera, (40, 20, 256))]


def person_crops() -> List[np.ndarray]:
    """60 small person crops (module docstring), uint8 [h, w, 3]."""
    from PIL import Image, ImageEnhance, ImageFilter

    crops = []
    for image, (top, left, width) in _people():
        box = np.ascontiguousarray(image[top:top + 2 * width, left:left + width])
        for size in CROP_SIZES:
            small = Image.fromarray(box).resize(size, Image.BICUBIC)
            stream = io.BytesIO()
            small.save(stream, "JPEG", quality=35)
            for variant in (small, small.filter(ImageFilter.GaussianBlur(0.8)),
                            ImageEnhance.Brightness(small).enhance(0.6), small.transpose(Image.FLIP_LEFT_RIGHT),
                            Image.open(stream).convert("RGB")):
                crops.append(np.asarray(variant))
    return crops


def empty_images(size: Tuple[int, int] = (64, 128)) -> List[np.ndarray]:
    """Images without a person at `size` (width, height): uniform, noise, and 1:2 crops of
    scikit-image's photos of textures and things."""
    from PIL import Image
    from skimage import data

    width, height = size
    rng = np.random.default_rng(1)
    images = [np.full((height, width, 3), value, np.uint8) for value in (0, 128, 255)]
    images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    images.append(np.asarray(Image.fromarray(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8))
                             .resize(size, Image.BICUBIC)))
    for name in ("coffee", "brick", "grass", "gravel", "rocket", "chelsea", "hubble_deep_field", "clock",
                 "page", "text", "moon"):
        photo = getattr(data, name)()
        photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]
        for top_share, left_share in ((0, 0), (0.25, 0.33)):
            part = photo[int(photo.shape[0] * top_share):, int(photo.shape[1] * left_share):]
            crop_height = min(part.shape[0], 2 * part.shape[1])
            part = np.ascontiguousarray(part[:crop_height, :crop_height // 2])
            images.append(np.asarray(Image.fromarray(part).resize(size, Image.BICUBIC)))
    return images


def read_folder(folder: str) -> List[np.ndarray]:
    from tfrf.photos import read_photo

    names = sorted(name for name in os.listdir(folder) if name.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        raise SystemExit(f"{folder} holds no .jpg or .png")
    return [read_photo(os.path.join(folder, name)) for name in names]


def sides_in_cmu_order(keypoints: np.ndarray) -> bool:
    """Whether the shoulders (CMU 2 right, 5 left) and, where present, the eyes (14 right, 15
    left) lie on the same sides: the person's right side on one side of the image for both."""
    from tfrf.pose.keypoints import present

    seen = present(keypoints)
    pairs = [(2, 5), (14, 15), (16, 17), (8, 11)]
    signs = [np.sign(keypoints[right, 1] - keypoints[left, 1]) for right, left in pairs if seen[right] and seen[left]]
    return len(set(signs)) <= 1


def count(images: Sequence[np.ndarray], **settings) -> Dict[str, float]:
    from tfrf.pose.keypoint_detection import PoseDetector

    found, consistent, passes = 0, 0, {}
    with PoseDetector(static_image_mode=True, **settings) as detector:
        for image in images:
            keypoints = detector(image)
            if keypoints is None:
                continue
            found += 1
            consistent += sides_in_cmu_order(keypoints)
            passes[detector.last_pass] = passes.get(detector.last_pass, 0) + 1
    return {"found": found, "consistent": consistent, "passes": passes}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="a folder of person crops (default: crops of bundled photos)")
    parser.add_argument("--empty-folder", help="a folder of images without a person (default: built-in)")
    args = parser.parse_args(argv)
    people = read_folder(args.folder) if args.folder else person_crops()
    empty = read_folder(args.empty_folder) if args.empty_folder else empty_images()
    print(f"{len(people)} person crops ({args.folder or 'bundled photos'}), {len(empty)} images without a person")
    print(f"{'strategy':38s} {'found':>9s} {'CMU sides':>9s} {'false':>7s}  passes that found")
    for name, settings in STRATEGIES:
        hits, misses = count(people, **settings), count(empty, **settings)
        print(f"{name:38s} {hits['found']:4d}/{len(people):<4d} {hits['consistent']:9d} "
              f"{misses['found']:3d}/{len(empty):<3d}  {dict(sorted(hits['passes'].items()))}")


if __name__ == "__main__":
    main()
