"""Opening prepared TFDS data the way the command line names it.

`--data-dir` is a prepared version folder (the one holding `dataset_info.json`, opened with
`tfds.builder_from_directory`: no builder class needed, what the builder knows is in the stored
metadata), or a TFDS data_dir with `--dataset NAME[/CONFIG]` (opened with `tfds.builder`, the
tfrf builders registered by `import tfrf.datasets`).
"""
from __future__ import annotations

import json
import os
from typing import Optional

# The model/training preset of each dataset's data (a table of names, not a branch in a network).
DATASET_PRESETS = {
    "deep_fashion_in_shop": "deepfashion",
    "market1501": "market1501",
    "shapenet_chairs": "shapenet_chairs",
    "kitti_odometry": "kitti",
    "voxceleb2": "voxceleb2",
}
INFO_FILE = "dataset_info.json"


def is_version_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INFO_FILE))


def _prepared_names(data_dir: str):
    """'name/config/version' of every prepared dataset under a TFDS data_dir (for messages)."""
    found = []
    for root, _, files in os.walk(data_dir):
        if INFO_FILE in files:
            found.append(os.path.relpath(root, data_dir))
        if len(found) >= 10:
            break
    return sorted(found)


def dataset_name(data_dir: str, dataset: Optional[str] = None) -> str:
    """The TFDS name of the data (without config or version)."""
    if dataset:
        return dataset.split("/")[0].split(":")[0]
    if not is_version_folder(data_dir):
        raise_not_prepared(data_dir)
    with open(os.path.join(data_dir, INFO_FILE), encoding="utf-8") as stream:
        return json.load(stream)["name"]


def preset_of_dataset(data_dir: str, dataset: Optional[str] = None) -> str:
    """The preset of the dataset at `data_dir` (see `DATASET_PRESETS`)."""
    name = dataset_name(data_dir, dataset)
    if name not in DATASET_PRESETS:
        raise ValueError(f"dataset {name!r} has no default preset; give --preset (known datasets: "
                         f"{sorted(DATASET_PRESETS)})")
    return DATASET_PRESETS[name]


def raise_not_prepared(data_dir: str):
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data-dir {data_dir} does not exist")
    found = _prepared_names(data_dir)
    hint = f"; it holds {', '.join(found)}: name one with --dataset" if found else ""
    raise ValueError(f"--data-dir {data_dir} is not a prepared TFDS version folder (no {INFO_FILE}); with a "
                     f"TFDS data_dir give --dataset NAME{hint}")


def open_prepared(data_dir: str, dataset: Optional[str] = None):
    """A prepared, read-only-usable `tfds.core.DatasetBuilder` for `--data-dir` (and `--dataset`)."""
    import tensorflow_datasets as tfds

    data_dir = os.path.expanduser(data_dir)
    if dataset is None:
        if not is_version_folder(data_dir):
            raise_not_prepared(data_dir)
        return tfds.builder_from_directory(data_dir)
    import tfrf.datasets  # noqa: F401  registers the five builders

    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data-dir {data_dir} does not exist")
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except Exception as error:  # noqa: BLE001  tfds raises several kinds for an unknown name/config
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--dataset {dataset}: {first[:200]} (tfrf datasets: {sorted(DATASET_PRESETS)})") from None
    if not is_version_folder(os.fspath(builder.data_dir)):
        raise FileNotFoundError(
            f"--dataset {dataset} is not prepared under {data_dir} (no {builder.data_dir}/{INFO_FILE}); prepare it "
            "with the builder's download_and_prepare (see its MANUAL_DOWNLOAD_INSTRUCTIONS)")
    return builder


def stored_test_tuples(builder, k: int):
    """The fixed test tuples for K sources written beside the prepared data, or None."""
    from tfrf.data import tuples as tuples_lib

    path = tuples_lib.test_tuples_path(builder.data_dir, k)
    return tuples_lib.load_tuples(path) if os.path.isfile(path) else None
