"""Writes tiny ShapeNet-chairs benchmark files in Sun et al.'s raw layout (for tests and demos).

Every view is a flat colour that encodes it: red = 10 * azimuth bin, green = 80 * elevation bin,
blue = 40 * model number, so a test can check each stored image against its view.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

from tfrf.datasets import view_common
from tfrf.datasets.shapenet_chairs import shapenet_chairs_dataset_builder as builder_lib


def view_color(model_number: int, azimuth_bin: int, elevation_bin: int):
    return (10 * azimuth_bin, 80 * elevation_bin, 40 * model_number)


def write_dummy_data(root: str, split_models: Dict[str, Sequence[str]], image_size: int = 16,
                     extra_test_keys: Sequence[str] = ()) -> Dict[str, list]:
    """Writes data_chair.hdf5 and the id files for all 54 views of every model.

    Args:
        root: the manual directory.
        split_models: split -> model ids (their position in the concatenated lists is the
            model number of `view_color`).
        image_size: side of the images.
        extra_test_keys: keys appended to the test id file without a view in the HDF5.

    Returns:
        split -> keys written to its id file.
    """
    views, ids = {}, {}
    model_numbers = {model: number for number, model in
                     enumerate(model for models in split_models.values() for model in models)}
    for split, models in split_models.items():
        ids[split] = []
        for model in models:
            for elevation_bin, elevation in enumerate((0, 10, 20)):
                for azimuth_bin in range(18):
                    key = f"{model}_{2 * azimuth_bin}_{elevation}"
                    color = view_color(model_numbers[model], azimuth_bin, elevation_bin)
                    image = np.broadcast_to(np.asarray(color, np.uint8), (image_size, image_size, 3))
                    views[key] = (image, np.array([2 * azimuth_bin, elevation], np.int64))
                    ids[split].append(key)
    ids["test"] = ids.get("test", []) + list(extra_test_keys)
    view_common.write_hdf5_views(os.path.join(root, builder_lib.HDF5_FILE), views)
    for split, keys in ids.items():
        view_common.write_id_file(os.path.join(root, builder_lib.ID_FILES[split]), keys)
    return ids
