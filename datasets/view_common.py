"""What the ShapeNet chairs, KITTI odometry and VoxCeleb2 builders share.

Each prepared split stores every image once with its raw pose (view bins, a 6-DOF vector, a
landmark drawing), its group (object, sequence, video) and, where it matters, its frame order
and whether it may be a target; K+1 tuples are drawn in the input pipeline
(`tfrf.data.pipeline`), so any K works without rebuilding. After preparation the fixed, seeded
test tuples are written beside the data (`test_tuples_k{K}.npy`, indices into the prepared test
split), and what was skipped while preparing goes to the log and to `prepare_report.json`.

Also here: reading the HDF5 benchmark files of Sun et al. (2018), id files, and image resizing.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from tfrf.datasets.prepared import REPORT_FILE, PreparedDataMixin, SkipLog  # noqa: F401  (re-exported)
from tfrf.io import atomic_write_text  # noqa: F401  (re-exported for the dummy-data scripts)

logger = logging.getLogger("tfrf.datasets")


@dataclasses.dataclass(eq=False)
class ViewConfig(tfds.core.BuilderConfig):
    """Output geometry and test tuples of a view / face dataset.

    Attributes:
        image_size: side of the stored square images (and landmark drawings).
        encoding_format: "png" (lossless) or "jpeg".
        test_tuple_ks: the K for which fixed test tuples are written with the data.
        test_tuple_seed: their seed.
    """

    image_size: int = 256
    encoding_format: str = "png"
    test_tuple_ks: Tuple[int, ...] = (1, 2, 3, 4)
    test_tuple_seed: int = 0


class ViewBuilder(PreparedDataMixin, tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: subclasses define `_info`, `_split_generators`, `_generate_examples`.

    Class attributes:
        VIEW_TABLE: feature names for `tfrf.data.tfds_table.table_from_tfds` (image, pose, group,
            order, targets_ok) and the pose encoder name.
        MAX_OFFSET: the largest frame offset between a source and its target (with the
            `order` feature), or None.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    VIEW_TABLE: Dict[str, Optional[str]] = {}
    MAX_OFFSET: Optional[int] = None

    def __init__(self, *, file_format=None, **kwargs):
        # array_record gives random access (tfds.data_source): the images need not fit in RAM.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def image_feature(self) -> tfds.features.Image:
        config = self.builder_config
        return tfds.features.Image(shape=(config.image_size, config.image_size, 3),
                                   encoding_format=config.encoding_format)


def manual_file(dl_manager, name: str, dataset: str, instructions: str) -> str:
    """The path of `name` in the manual directory; FileNotFoundError with the instructions."""
    manual_dir = os.fspath(dl_manager.manual_dir)  # TFDS raises with the instructions if empty
    path = os.path.join(manual_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{dataset}: {path} is missing. Expected layout:\n{instructions}")
    return path


def read_id_file(path: str) -> List[str]:
    """The keys listed in an id file, one per line (blank lines ignored), in file order."""
    with open(path, encoding="utf-8") as stream:
        keys = [line.strip() for line in stream]
    keys = [key for key in keys if key]
    repeated = [key for key, count in collections.Counter(keys).items() if count > 1]
    if repeated:
        raise ValueError(f"id file {path} lists {len(repeated)} keys twice, e.g. {repeated[0]!r}")
    return keys


def open_hdf5(path: str):
    """Opens an HDF5 file read-only (h5py is imported here, with a clear error if missing)."""
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading {path} needs h5py: pip install h5py") from error
    return h5py.File(path, "r")


def check_keys(hdf5_file, keys: Iterable[str], id_path: str, hdf5_path: str) -> None:
    """Raises ValueError naming the first key of an id file that the HDF5 file lacks."""
    missing = [key for key in keys if key not in hdf5_file]
    if missing:
        raise ValueError(
            f"key {missing[0]!r} listed in {id_path} is missing from {hdf5_path}"
            + (f" ({len(missing)} keys missing in all)" if len(missing) > 1 else "")
        )


def read_hdf5_view(hdf5_file, key: str, hdf5_path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], pose float64 [P]) of group `key` of a Sun et al. HDF5 file."""
    if key not in hdf5_file:
        raise ValueError(f"key {key!r} is missing from {hdf5_path}")
    group = hdf5_file[key]
    for name in ("image", "pose"):
        if name not in group:
            raise ValueError(f"{hdf5_path}: group {key!r} has no {name!r} dataset (it has {sorted(group)})")
    image = as_rgb(np.asarray(group["image"][()]), f"{hdf5_path}[{key!r}]/image")
    pose = np.asarray(group["pose"][()], dtype=np.float64).reshape(-1)
    return image, pose


def as_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """An image as uint8 [H, W, 3] (grey is repeated, alpha dropped, [0, 1] floats scaled)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must be an image [H, W, 3] (or grey / RGBA), got shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image[..., :3]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB image resized (bilinear, anti-aliased) to size x size; unchanged if it is already."""
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def index_of(names: Sequence[str]) -> Dict[str, int]:
    """name -> its position among the sorted distinct names (a stable integer group id)."""
    return {name: index for index, name in enumerate(sorted(set(names)))}




def write_hdf5_views(path: str, views: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> None:
    """Writes key -> (image, pose) groups in Sun et al.'s HDF5 layout (for dummy data)."""
    import h5py

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = path + ".tmp"
    with h5py.File(temporary, "w") as hdf5_file:
        for key, (image, pose) in views.items():
            group = hdf5_file.create_group(key)
            group.create_dataset("image", data=np.asarray(image, dtype=np.uint8))
            group.create_dataset("pose", data=np.asarray(pose))
    os.replace(temporary, path)


def write_id_file(path: str, keys: Sequence[str]) -> None:
    """Writes an id file, one key per line."""
    atomic_write_text(path, "".join(f"{key}\n" for key in keys))
