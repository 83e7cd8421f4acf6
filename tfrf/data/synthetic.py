"""The built-in synthetic multi-view dataset: procedural textured chairs, 54 views each.

Like the ShapeNet chairs of the multi-view literature, each object is rendered from 18
azimuths (20 degrees apart) x 3 elevations (0, 10, 20 degrees), 64 x 64 RGB on white. Objects
are chairs assembled from boxes (`synthetic_chairs`) drawn by a numpy ray caster
(`synthetic_render`). Nothing is downloaded: the data is generated in seconds and cached.

- `generate(num_objects, seed, split=...)`: render the objects of one split.
- `load(split, ...)`: the same, cached in an `.npz` keyed by every parameter.
- `load_table(split, ...)`: a `tfrf.data.pipeline.ViewTable` with the `view21` pose encoder.

Object `i` of a split is drawn from its own random stream `(seed, split, i)`, so train and test
objects are disjoint, every object is reproducible on its own, and a larger dataset starts with
the objects of a smaller one. The raw pose of a view is `[azimuth_bin, elevation_bin]`.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

import numpy as np

from tfrf.data.synthetic_chairs import random_chair
from tfrf.io import atomic_write
from tfrf.data.synthetic_render import fit_field_of_view, render_views
from tfrf.pose.views import AZIMUTH_STEP_DEGREES, ELEVATIONS_DEGREES, NUM_AZIMUTH_BINS, NUM_ELEVATION_BINS

SPLITS = ("train", "test")
DEFAULT_NUM_OBJECTS = {"train": 200, "test": 50}
VIEWS_PER_OBJECT = NUM_AZIMUTH_BINS * NUM_ELEVATION_BINS
POSE_ENCODER = "view21"

# Bump when the generator changes what it draws: it is part of the cache key.
GENERATOR_VERSION = 1
_CAMERA_DISTANCE = 3.5  # in units of the chair's bounding-sphere radius
_FILL = 0.9
_SPLIT_STREAMS = {"train": 0, "test": 1}
_ARRAYS = ("images", "poses", "groups", "order")


def view_bins() -> np.ndarray:
    """int32 [54, 2] raw poses `[azimuth_bin, elevation_bin]`, elevation-major."""
    elevation, azimuth = np.meshgrid(np.arange(NUM_ELEVATION_BINS), np.arange(NUM_AZIMUTH_BINS), indexing="ij")
    return np.stack([azimuth.ravel(), elevation.ravel()], axis=-1).astype(np.int32)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"synthetic: split must be one of {SPLITS}, got {split!r}")


def render_object(seed: int, split: str, index: int, image_size: int = 64, supersample: int = 2) -> np.ndarray:
    """The 54 views of object `index` of `split`: uint8 [54, image_size, image_size, 3]."""
    _check_split(split)
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split], index])
    chair = random_chair(rng)
    bins = view_bins()
    azimuths = bins[:, 0] * AZIMUTH_STEP_DEGREES
    elevations = np.asarray(ELEVATIONS_DEGREES)[bins[:, 1]]
    # Zoom so that the chair fills 90% of the frame in its widest view, as object-centred
    # renders of ShapeNet do.
    field_of_view = fit_field_of_view(chair, azimuths, elevations, _CAMERA_DISTANCE, _FILL)
    return render_views(
        chair, azimuths, elevations, size=image_size, distance=_CAMERA_DISTANCE, fov_deg=field_of_view,
        supersample=supersample,
    )


def generate(
    num_objects: int,
    seed: int = 0,
    image_size: int = 64,
    split: str = "train",
    supersample: int = 2,
    workers: Optional[int] = None,
) -> Dict[str, np.ndarray]:
    """Render `num_objects` objects of `split`, 54 views each.

    Args:
        num_objects: how many objects.
        seed: dataset seed; the same seed gives identical bytes.
        image_size: height and width of the views.
        split: "train" or "test"; the two draw disjoint objects.
        supersample: anti-aliasing factor (renders at `image_size * supersample`).
        workers: rendering threads (numpy releases the GIL in its array loops); default
            min(cpu count, 4). The result does not depend on it.

    Returns:
        dict of `images` uint8 [N, S, S, 3], `poses` int32 [N, 2] (`[azimuth_bin,
        elevation_bin]`), `groups` int64 [N] (object index) and `order` int64 [N] (view index
        0..53, elevation-major), with N = 54 * num_objects.
    """
    _check_split(split)
    if num_objects < 1:
        raise ValueError(f"synthetic.generate: num_objects must be >= 1, got {num_objects}")
    if seed < 0:
        raise ValueError(f"synthetic.generate: seed must be >= 0, got {seed}")
    if image_size < 8:
        raise ValueError(f"synthetic.generate: image_size must be >= 8, got {image_size}")
    images = np.empty((num_objects, VIEWS_PER_OBJECT, image_size, image_size, 3), np.uint8)

    def render(index: int) -> None:
        images[index] = render_object(seed, split, index, image_size, supersample)

    with ThreadPoolExecutor(max(1, workers or min(os.cpu_count() or 1, 4))) as pool:
        list(pool.map(render, range(num_objects)))
    images = images.reshape(num_objects * VIEWS_PER_OBJECT, image_size, image_size, 3)
    return {
        "images": images,
        "poses": np.tile(view_bins(), (num_objects, 1)),
        "groups": np.repeat(np.arange(num_objects, dtype=np.int64), VIEWS_PER_OBJECT),
        "order": np.tile(np.arange(VIEWS_PER_OBJECT, dtype=np.int64), num_objects),
    }


def default_cache_dir() -> str:
    """`$TFRF_CACHE_DIR/synthetic`, else `$XDG_CACHE_HOME/tfrf/synthetic`, else `~/.cache/tfrf/synthetic`."""
    if os.environ.get("TFRF_CACHE_DIR"):
        return os.path.join(os.environ["TFRF_CACHE_DIR"], "synthetic")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfrf", "synthetic")


def cache_path(
    split: str, num_objects: int, seed: int, image_size: int, supersample: int, cache_dir: Optional[str] = None
) -> str:
    """The `.npz` file that caches one parameter set."""
    key = f"v{GENERATOR_VERSION}-{split}-n{num_objects}-seed{seed}-s{image_size}-aa{supersample}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return os.path.join(cache_dir or default_cache_dir(), f"chairs-{key}-{digest}.npz")




def load(
    split: str,
    cache_dir: Optional[str] = None,
    seed: int = 0,
    num_objects: Optional[int] = None,
    image_size: int = 64,
    supersample: int = 2,
    use_cache: bool = True,
    verbose: bool = False,
) -> Dict[str, np.ndarray]:
    """One split, from the cache or freshly generated (and then cached atomically).

    Args:
        split: "train" or "test".
        cache_dir: where the `.npz` files live; default `default_cache_dir()`.
        seed, image_size, supersample: as in `generate`.
        num_objects: default 200 for train, 50 for test.
        use_cache: False always regenerates and writes nothing.
        verbose: print what happens and how long generation took.

    Returns:
        the dict of `generate`.
    """
    _check_split(split)
    num_objects = num_objects or DEFAULT_NUM_OBJECTS[split]
    path = cache_path(split, num_objects, seed, image_size, supersample, cache_dir)
    if use_cache and os.path.exists(path):
        try:
            with np.load(path) as stored:
                return {name: stored[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            warnings.warn(f"synthetic {split}: ignoring unreadable cache {path} ({error}); regenerating")
    start = time.perf_counter()
    data = generate(num_objects, seed=seed, image_size=image_size, split=split, supersample=supersample)
    if verbose:
        print(f"synthetic {split}: rendered {num_objects} objects x {VIEWS_PER_OBJECT} views "
              f"in {time.perf_counter() - start:.1f} s")
    if use_cache:
        atomic_write(path, lambda stream: np.savez_compressed(stream, **data))
        if verbose:
            print(f"synthetic {split}: cached in {path}")
    return data


def load_table(split: str, **kwargs):
    """One split as a `tfrf.data.pipeline.ViewTable` (pose encoder "view21"); kwargs as `load`."""
    from tfrf.data.pipeline import ViewTable

    data = load(split, **kwargs)
    return ViewTable(
        images=data["images"],
        poses=data["poses"],
        groups=data["groups"],
        order=data["order"],
        pose_encoder=POSE_ENCODER,
    )
