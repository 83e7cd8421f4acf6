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

`misaligned=True` (everywhere a split is made) is the variant of uncalibrated cameras: the same
objects, every image rendered from its own jittered camera (`synthetic_cameras.CameraJitter`:
+-8 degrees in azimuth and elevation, distance +-15 %, image-plane shift up to 6 %, roll +-5
degrees) while its pose label stays the nominal bin; its arrays add `cameras` float64 [N, 6], the
true camera of every image. The aligned data is unchanged by the variant.

`load_table(split, misaligned=True, nominal_targets=True)` is the variant of misaligned sources
(`--dataset misaligned_sources`): sources from their jittered cameras, every target as its label
names it (the aligned render, `ViewTable.target_images`), as when the target pose is given and
only the sources come from uncalibrated cameras (the paper's setting). With every image jittered,
a target's own jitter is not in any input: no model can predict it, and it alone leaves the
ground-truth flow 0.85 px (H/8) from the one to the target's nominal camera, against 1.30 px for
the zero flow (100 held-out K = 2 tuples of seed 0).

Ground truth (`view_pair`, `ground_truth_levels`, `tuple_ground_truth`): per target pixel, where
its surface point lies in a source view and whether it is visible there, ray-cast from the true
cameras (`synthetic_cameras`). It is computed on demand from the object's seed (about a
millisecond per pair at 64 px), so nothing but the cameras needs caching.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
import zipfile
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfrf.data import synthetic_cameras as cameras_lib
from tfrf.data.synthetic_chairs import random_chair
from tfrf.io import atomic_write
from tfrf.data.synthetic_render import TexturedBoxes, fit_field_of_view, render_views
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


def _nominal_angles() -> Tuple[np.ndarray, np.ndarray]:
    bins = view_bins()
    return bins[:, 0] * AZIMUTH_STEP_DEGREES, np.asarray(ELEVATIONS_DEGREES)[bins[:, 1]]


@functools.lru_cache(maxsize=256)
def object_cameras(seed: int, split: str, index: int, misaligned: bool = False) -> Tuple[TexturedBoxes, object]:
    """Object `index` of `split` and the true cameras of its 54 views (`synthetic_cameras.Cameras`):
    the bins' cameras, or with `misaligned` each jittered by its own draw. Cached (they are
    read-only: do not modify them)."""
    _check_split(split)
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split], index])
    chair = random_chair(rng)
    azimuths, elevations = _nominal_angles()
    # Zoom so that the chair fills 90% of the frame in its widest view, as object-centred
    # renders of ShapeNet do.
    field_of_view = fit_field_of_view(chair, azimuths, elevations, _CAMERA_DISTANCE, _FILL)
    cameras = cameras_lib.nominal_cameras(azimuths, elevations, _CAMERA_DISTANCE, field_of_view)
    if misaligned:
        jitter_rng = np.random.default_rng([seed, _SPLIT_STREAMS[split], index, cameras_lib.JITTER_STREAM])
        cameras = cameras_lib.jitter_cameras(cameras, jitter_rng, cameras_lib.MISALIGNED)
    return chair, cameras


def _render(chair: TexturedBoxes, cameras, views, image_size: int, supersample: int, misaligned: bool) -> np.ndarray:
    azimuths, elevations = _nominal_angles()
    views = np.asarray(views).reshape(-1)
    extra = cameras_lib.render_kwargs(cameras.take(views)) if misaligned else {}
    return render_views(chair, azimuths[views], elevations[views], size=image_size, distance=_CAMERA_DISTANCE,
                        fov_deg=cameras.fov_deg, supersample=supersample, **extra)


def render_object(seed: int, split: str, index: int, image_size: int = 64, supersample: int = 2,
                  misaligned: bool = False) -> np.ndarray:
    """The 54 views of object `index` of `split`: uint8 [54, image_size, image_size, 3]."""
    chair, cameras = object_cameras(seed, split, index, misaligned)
    return _render(chair, cameras, np.arange(VIEWS_PER_OBJECT), image_size, supersample, misaligned)


def generate(
    num_objects: int,
    seed: int = 0,
    image_size: int = 64,
    split: str = "train",
    supersample: int = 2,
    workers: Optional[int] = None,
    misaligned: bool = False,
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
        misaligned: render every image from its jittered true camera (labels stay nominal).

    Returns:
        dict of `images` uint8 [N, S, S, 3], `poses` int32 [N, 2] (`[azimuth_bin,
        elevation_bin]`), `groups` int64 [N] (object index) and `order` int64 [N] (view index
        0..53, elevation-major), with N = 54 * num_objects; with `misaligned` also `cameras`
        float64 [N, 6], the true camera of each image (`synthetic_cameras.CAMERA_FIELDS`).
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
        images[index] = render_object(seed, split, index, image_size, supersample, misaligned)

    with ThreadPoolExecutor(max(1, workers or min(os.cpu_count() or 1, 4))) as pool:
        list(pool.map(render, range(num_objects)))
    images = images.reshape(num_objects * VIEWS_PER_OBJECT, image_size, image_size, 3)
    data = {
        "images": images,
        "poses": np.tile(view_bins(), (num_objects, 1)),
        "groups": np.repeat(np.arange(num_objects, dtype=np.int64), VIEWS_PER_OBJECT),
        "order": np.tile(np.arange(VIEWS_PER_OBJECT, dtype=np.int64), num_objects),
    }
    if misaligned:
        data["cameras"] = np.concatenate([object_cameras(seed, split, index, True)[1].as_array()
                                          for index in range(num_objects)])
    return data


def default_cache_dir() -> str:
    """`$TFRF_CACHE_DIR/synthetic`, else `$XDG_CACHE_HOME/tfrf/synthetic`, else `~/.cache/tfrf/synthetic`."""
    if os.environ.get("TFRF_CACHE_DIR"):
        return os.path.join(os.environ["TFRF_CACHE_DIR"], "synthetic")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfrf", "synthetic")


def cache_path(
    split: str, num_objects: int, seed: int, image_size: int, supersample: int, cache_dir: Optional[str] = None,
    misaligned: bool = False,
) -> str:
    """The `.npz` file that caches one parameter set."""
    key = f"v{GENERATOR_VERSION}-{split}-n{num_objects}-seed{seed}-s{image_size}-aa{supersample}"
    if misaligned:
        key += "-" + cameras_lib.MISALIGNED.cache_key()
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
    misaligned: bool = False,
) -> Dict[str, np.ndarray]:
    """One split, from the cache or freshly generated (and then cached atomically).

    Args:
        split: "train" or "test".
        cache_dir: where the `.npz` files live; default `default_cache_dir()`.
        seed, image_size, supersample: as in `generate`.
        num_objects: default 200 for train, 50 for test.
        use_cache: False always regenerates and writes nothing.
        verbose: print what happens and how long generation took.
        misaligned: the variant of jittered cameras (cached in its own file).

    Returns:
        the dict of `generate`.
    """
    _check_split(split)
    num_objects = num_objects or DEFAULT_NUM_OBJECTS[split]
    path = cache_path(split, num_objects, seed, image_size, supersample, cache_dir, misaligned)
    names = _ARRAYS + (("cameras",) if misaligned else ())
    if use_cache and os.path.exists(path):
        try:
            with np.load(path) as stored:
                return {name: stored[name] for name in names}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            warnings.warn(f"synthetic {split}: ignoring unreadable cache {path} ({error}); regenerating")
    start = time.perf_counter()
    data = generate(num_objects, seed=seed, image_size=image_size, split=split, supersample=supersample,
                    misaligned=misaligned)
    if verbose:
        variant = " (misaligned)" if misaligned else ""
        print(f"synthetic {split}{variant}: rendered {num_objects} objects x {VIEWS_PER_OBJECT} views "
              f"in {time.perf_counter() - start:.1f} s")
    if use_cache:
        atomic_write(path, lambda stream: np.savez_compressed(stream, **data))
        if verbose:
            print(f"synthetic {split}: cached in {path}")
    return data


# `--dataset` of the built-in chairs (None: aligned) and the `load_table` arguments of each.
VARIANTS = {None: {}, "aligned": {}, "misaligned": {"misaligned": True},
            "misaligned_sources": {"misaligned": True, "nominal_targets": True}}


def variant_arguments(dataset: Optional[str]) -> Dict[str, bool]:
    """`load_table`'s `misaligned` and `nominal_targets` of a `--dataset` name of the built-in chairs."""
    if dataset not in VARIANTS:
        raise ValueError(f"--dataset {dataset}: the built-in chairs take --dataset aligned, misaligned or "
                         f"misaligned_sources")
    return {"misaligned": False, "nominal_targets": False, **VARIANTS[dataset]}


def load_table(split: str, nominal_targets: bool = False, **kwargs):
    """One split as a `tfrf.data.pipeline.ViewTable` (pose encoder "view21"); kwargs as `load`.

    `nominal_targets` (with `misaligned=True`): the variant of misaligned sources, whose targets
    are the aligned renders (`ViewTable.target_images`)."""
    from tfrf.data.pipeline import ViewTable

    data = load(split, **kwargs)
    target_images = None
    if nominal_targets:
        if not kwargs.get("misaligned"):
            raise ValueError("synthetic.load_table: nominal_targets needs misaligned=True (aligned targets are nominal)")
        target_images = load(split, **{**kwargs, "misaligned": False})["images"]
    return ViewTable(
        images=data["images"],
        poses=data["poses"],
        groups=data["groups"],
        order=data["order"],
        pose_encoder=POSE_ENCODER,
        target_images=target_images,
    )


# --- ground truth ------------------------------------------------------------------------------


def _check_view(name: str, view: int) -> int:
    if not 0 <= int(view) < VIEWS_PER_OBJECT:
        raise ValueError(f"synthetic: {name} must be a view index 0..{VIEWS_PER_OBJECT - 1}, got {view}")
    return int(view)


def view_pair(split: str, index: int, source_view: int, target_view: int, image_size: int = 64,
              misaligned: bool = False, seed: int = 0) -> Dict[str, np.ndarray]:
    """Two views of object `index` of `split` and the ground truth between them.

    Views are indices 0..53 as in `view_bins()`. The images are the dataset's (supersample 2).

    Returns:
        dict of uint8 `source`, `target` [S, S, 3]; float32 `flow` [S, S, 2], the backward flow:
        target pixel (x, y) sees source pixel (x + dx, y + dy), in pixels; bool `visible`
        [S, S]: the target pixel shows the object and its surface point is visible in the source.
    """
    source_view, target_view = _check_view("source_view", source_view), _check_view("target_view", target_view)
    chair, cameras = object_cameras(seed, split, int(index), bool(misaligned))
    source, target = _render(chair, cameras, [source_view, target_view], image_size, 2, misaligned)
    flow, visible, _ = cameras_lib.pair_ground_truth(chair, cameras.take([source_view]), cameras.take([target_view]),
                                                     image_size)
    return {"source": source, "target": target, "flow": flow[0], "visible": visible[0]}


def ground_truth_levels(split: str, index: int, source_views: Sequence[int], target_view: int, image_size: int = 64,
                        misaligned: bool = False, seed: int = 0,
                        levels: Sequence[str] = ("h", "h4", "h8"),
                        nominal_target: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
    """Ground truth from K source views to one target view at the generator's levels
    (`nominal_target`: to the target view's nominal camera, the misaligned sources' variant).

    Returns:
        `{"h": ..., "h4": ..., "h8": ...}`, each `{"flow": float32 [K, s, s, 2], "visible": bool
        [K, s, s], "shown": bool [s, s]}` (shown: the target pixel shows the object) with s = S,
        S / 4, S / 8 and the flow in pixels of that level (the rays
        through the centres of the coarse pixels: a level's flow is the full-resolution geometry
        at that size, not a subsampled map); only the `levels` asked for.
    """
    sources = [_check_view("source_views", view) for view in np.asarray(source_views).reshape(-1)]
    target_view = _check_view("target_view", target_view)
    chair, cameras = object_cameras(seed, split, int(index), bool(misaligned))
    target_cameras = object_cameras(seed, split, int(index), False)[1] if nominal_target else cameras
    sizes = cameras_lib.level_sizes(image_size)
    unknown = set(levels) - set(sizes)
    if unknown:
        raise ValueError(f"synthetic: unknown ground-truth levels {sorted(unknown)}; choose from {sorted(sizes)}")
    result = {}
    for level in levels:
        size = sizes[level]
        flow, visible, shown = cameras_lib.pair_ground_truth(chair, cameras.take(sources),
                                                             target_cameras.take([target_view] * len(sources)), size)
        result[level] = {"flow": flow, "visible": visible, "shown": shown[0]}
    return result


def tuple_ground_truth(table_groups: np.ndarray, table_order: np.ndarray, tuples: np.ndarray, image_size: int,
                       split: str = "test", misaligned: bool = False, seed: int = 0,
                       levels: Sequence[str] = ("h4", "h8"),
                       nominal_target: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
    """`ground_truth_levels` of test tuples (int [M, K+1] indices into a split whose `groups` are
    object indices and `order` view indices, as `generate` gives them), stacked:
    `{level: {"flow": [M, K, s, s, 2], "visible": [M, K, s, s], "shown": [M, s, s]}}` for `levels`."""
    tuples = np.asarray(tuples, np.int64)
    groups, order = np.asarray(table_groups)[tuples], np.asarray(table_order)[tuples]
    if np.any(groups != groups[:, :1]):
        raise ValueError("synthetic ground truth: every tuple must hold views of one object")
    names = ("flow", "visible", "shown")
    result: Dict[str, Dict[str, list]] = {level: {name: [] for name in names} for level in levels}
    for row in range(len(tuples)):
        truth = ground_truth_levels(split, int(groups[row, 0]), order[row, :-1], int(order[row, -1]), image_size,
                                    misaligned, seed, levels, nominal_target)
        for level in levels:
            for name in names:
                result[level][name].append(truth[level][name])
    return {level: {name: np.stack(values) for name, values in entry.items()} for level, entry in result.items()}
