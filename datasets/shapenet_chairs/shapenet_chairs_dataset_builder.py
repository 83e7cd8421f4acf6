"""ShapeNet chairs for novel view synthesis, in the benchmark files of Sun et al. (2018).

Sun, Huh, Liao, Zhang, Lim, "Multi-view to Novel View: Synthesizing Novel Views with
Self-Learned Confidence", ECCV 2018; followed by Lu et al., AAAI 2022 (K = 4 sources). Chang
et al., "ShapeNet: An Information-Rich 3D Model Repository", 2015.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfrf.datasets import view_common
from tfrf.pose import views

HDF5_FILE = "data_chair.hdf5"
ID_FILES = {"train": "id_chair_train.txt", "test": "id_chair_test.txt"}
# The HDF5 azimuth index counts 10-degree steps (0..35); only even ones are rendered.
AZIMUTH_INDEX_STEP_DEGREES = 10.0


def shapenet_view_bins(raw_pose, key: str = "?") -> Tuple[int, int]:
    """The HDF5 pose (azimuth index 0..35 in 10-degree steps, elevation in degrees 0/10/20)
    -> `[azimuth_bin 0..17, elevation_bin 0..2]` of the 21-channel view map.

    Raises:
        ValueError naming `key` for an odd or out-of-range azimuth index or another elevation.
    """
    raw_pose = np.asarray(raw_pose, dtype=np.float64).reshape(-1)
    if raw_pose.shape != (2,):
        raise ValueError(f"ShapeNet view {key!r}: pose must hold 2 values (azimuth index, elevation), got {raw_pose.shape}")
    azimuth_index, elevation = raw_pose
    steps_per_bin = views.AZIMUTH_STEP_DEGREES / AZIMUTH_INDEX_STEP_DEGREES
    azimuth_bin = azimuth_index / steps_per_bin
    if azimuth_bin != np.round(azimuth_bin) or not 0 <= azimuth_bin < views.NUM_AZIMUTH_BINS:
        raise ValueError(
            f"ShapeNet view {key!r}: azimuth index {azimuth_index:g} must be even and in 0..34 "
            f"(10-degree steps, views {views.AZIMUTH_STEP_DEGREES:g} degrees apart)"
        )
    if elevation not in views.ELEVATIONS_DEGREES:
        raise ValueError(f"ShapeNet view {key!r}: elevation {elevation:g} must be one of {views.ELEVATIONS_DEGREES} degrees")
    return int(azimuth_bin), views.ELEVATIONS_DEGREES.index(elevation)


def model_of(key: str) -> str:
    """The model id of a key `{model}_{azimuth index}_{elevation}`."""
    parts = key.rsplit("_", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"ShapeNet key {key!r} is not of the form {{model}}_{{azimuth}}_{{elevation}}")
    return parts[0]


class ShapenetChairs(view_common.ViewBuilder):
    """ShapeNet chair renderings, 18 azimuths x 3 elevations per model, with view one-hots."""

    pkg_dir_path = epath.Path(__file__).parent  # README.md and CITATIONS.bib live here
    VIEW_TABLE = {"image": "image", "pose": "view", "group": "model_index", "pose_encoder": "view21"}
    BUILDER_CONFIGS = [
        view_common.ViewConfig(name="256", description="256x256 images, the benchmark's size.", image_size=256),
        view_common.ViewConfig(name="128", description="Images resized to 128x128.", image_size=128),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the ShapeNet chair benchmark files of Sun et al. (2018), "Multi-view to Novel
    View" (see their repository's README), and place in the manual directory:

        <manual_dir>/data_chair.hdf5       one group per view, keyed {model}_{az}_{el}, holding
                                           `image` (H x W x 3 uint8) and `pose` (azimuth index
                                           0..35 in 10-degree steps, even only; elevation 0/10/20)
        <manual_dir>/id_chair_train.txt    keys of the training views, one per line
        <manual_dir>/id_chair_test.txt     keys of the test views (models disjoint from training)
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "ShapeNet chairs rendered at 18 azimuths (20 degrees apart) x 3 elevations (0, 10, "
                "20 degrees), as distributed by Sun et al. (2018). Each example is one view: the "
                "image, its view bins [azimuth 0..17, elevation 0..2] (the 21-channel one-hot map's "
                "indices), the model it shows (the tuple group) and model x elevation (to draw "
                "sources at the target's elevation, as Sun et al. do)."
            ),
            features=tfds.features.FeaturesDict({
                "image": self.image_feature(),
                "view": tfds.features.Tensor(shape=(2,), dtype=np.int64),
                "model_index": np.int64,
                "model_elevation_index": np.int64,
                "model": tfds.features.Text(),
                "key": tfds.features.Text(),
            }),
            homepage="https://shaohua0116.github.io/Multiview2Novelview/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        hdf5_path = view_common.manual_file(dl_manager, HDF5_FILE, self.name, instructions)
        id_paths = {split: view_common.manual_file(dl_manager, name, self.name, instructions)
                    for split, name in ID_FILES.items()}
        models = {split: {model_of(key) for key in view_common.read_id_file(path)} for split, path in id_paths.items()}
        shared = models["train"] & models["test"]
        if shared:
            raise ValueError(f"{self.name}: train and test share models, e.g. {sorted(shared)[0]!r}")
        return {split: self._generate_examples(hdf5_path, path) for split, path in id_paths.items()}

    def _generate_examples(self, hdf5_path: str, id_path: str) -> Iterator[Tuple[str, dict]]:
        size = self.builder_config.image_size
        keys = view_common.read_id_file(id_path)
        model_index = view_common.index_of([model_of(key) for key in keys])
        with view_common.open_hdf5(hdf5_path) as hdf5_file:
            view_common.check_keys(hdf5_file, keys, id_path, hdf5_path)
            for key in keys:
                image, raw_pose = view_common.read_hdf5_view(hdf5_file, key, hdf5_path)
                azimuth_bin, elevation_bin = shapenet_view_bins(raw_pose, key)
                model = model_of(key)
                yield key, {
                    "image": view_common.resize_square(image, size),
                    "view": np.array([azimuth_bin, elevation_bin], dtype=np.int64),
                    "model_index": model_index[model],
                    "model_elevation_index": model_index[model] * views.NUM_ELEVATION_BINS + elevation_bin,
                    "model": model,
                    "key": key,
                }
