"""What every tfrf builder adds to TFDS: self-describing prepared data and `as_dataset` on array_record.

- The builder's knowledge of its data (feature names of image, pose, group, frame order and
  target eligibility; the pose encoder; the largest source-target frame offset) is written with
  the prepared data as TFDS metadata (`metadata.json`, key `view_table`). A read-only
  `tfds.builder_from_directory(...)` therefore has all of it, without the builder class.
- The data are stored as array_record (random access for the tuple sampler). TFDS reads that
  format only through `as_data_source`; `as_dataset()` / `tfds.load(...)` here stream the same
  random-access source into a `tf.data.Dataset`, in stored order (shuffled if asked).
"""
from __future__ import annotations

import collections
import json
import logging
import os
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfrf.data import tuples as tuples_lib
from tfrf.data.tfds_columns import read_split_columns
from tfrf.data.tuples import test_tuples_path
from tfrf.io import atomic_write_text

logger = logging.getLogger("tfrf.datasets")

REPORT_FILE = "prepare_report.json"
METADATA_KEY = "view_table"
VIEW_TABLE_FIELDS = ("image", "pose", "group", "order", "targets_ok", "pose_encoder", "max_offset")


class SkipLog:
    """Counts what a split's preparation skipped, warning once per skipped item."""

    def __init__(self, dataset: str, split: str):
        self.dataset, self.split = dataset, split
        self.counts: collections.Counter = collections.Counter()

    def skip(self, reason: str, detail: str = "", count: int = 1, warn: bool = True) -> None:
        """Counts `count` items skipped for `reason`; logs a warning with `detail`."""
        self.counts[reason] += count
        if warn:
            logger.warning("%s/%s: skipped (%s) %s", self.dataset, self.split, reason, detail)

    def summary(self) -> str:
        text = ", ".join(f"{count} {reason}" for reason, count in sorted(self.counts.items())) or "nothing"
        return f"{self.dataset}/{self.split}: skipped {text}"


class PreparedDataMixin:
    """Mixin for `tfds.core.GeneratorBasedBuilder` subclasses with `VIEW_TABLE` (and `MAX_OFFSET`).

    Also counts what preparation skipped (`skip_log(split).skip(reason, detail)`), logs it and
    writes it to `prepare_report.json` beside the data (`prepare_report()` reads it back).
    """

    VIEW_TABLE: Dict[str, Optional[str]] = {}
    MAX_OFFSET: Optional[int] = None

    def skip_log(self, split: str) -> SkipLog:
        """The (new) skip counter of `split`, reported after preparation."""
        logs = self.__dict__.setdefault("skip_logs", {})
        logs[split] = SkipLog(self.name, split)
        return logs[split]

    def write_prepare_report(self) -> None:
        """Logs the skip counts and writes `prepare_report.json` (every split, {} when nothing
        was skipped), if this process prepared the data."""
        logs = self.__dict__.get("skip_logs")
        if not logs:
            return
        for log in logs.values():
            logger.info(log.summary())
        report = {split: dict(log.counts) for split, log in logs.items()}
        atomic_write_text(os.path.join(os.fspath(self.data_dir), REPORT_FILE), json.dumps(report, indent=2))

    def download_and_prepare(self, *args, **kwargs):
        """Prepares the data (TFDS), logs and reports what was skipped, writes the fixed test
        tuples of every `builder_config.test_tuple_ks` beside the data."""
        super().download_and_prepare(*args, **kwargs)
        self.write_prepare_report()
        for k in self.builder_config.test_tuple_ks:
            self.test_tuples(k)

    def test_tuples_path(self, k: int) -> str:
        return test_tuples_path(self.data_dir, k)

    def test_tuples(self, k: int, split: str = "test") -> np.ndarray:
        """The fixed, seeded tuples for K sources (indices into the prepared `split`), read from
        beside the prepared data (written there first if missing, for the test split)."""
        path = self.test_tuples_path(k) if split == "test" else None
        if path and os.path.exists(path):
            return tuples_lib.load_tuples(path)
        table = self.view_table_metadata()
        keys = [key for key in (table["group"], table.get("order"), table.get("targets_ok")) if key]
        skip = [key for key in (table["image"], table["pose"])
                if key and isinstance(self.info.features[key], tfds.features.Image)]
        columns = read_split_columns(self, split, keys, skip_decoding=skip)
        kwargs = {}
        if table.get("targets_ok"):
            kwargs["targets_ok"] = np.asarray(columns[table["targets_ok"]], dtype=bool)
        if table.get("max_offset") is not None:
            kwargs.update(order=np.asarray(columns[table["order"]], dtype=np.int64), max_offset=table["max_offset"])
        groups = np.asarray(columns[table["group"]], dtype=np.int64)
        tuples = tuples_lib.fixed_test_tuples(groups, k, self.builder_config.test_tuple_seed, **kwargs)
        if path:
            tuples_lib.save_tuples(path, tuples)
        return tuples

    def prepare_report(self) -> Dict[str, Dict[str, int]]:
        """split -> {reason: count} of what preparation skipped ({} if nothing was recorded)."""
        path = os.path.join(os.fspath(self.data_dir), REPORT_FILE)
        if not os.path.exists(path):
            return {}
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)

    @classmethod
    def view_table_metadata(cls) -> Dict[str, Any]:
        """The `view_table` entry stored with the prepared data."""
        table = {field: cls.VIEW_TABLE.get(field) for field in VIEW_TABLE_FIELDS if field != "max_offset"}
        table["max_offset"] = cls.MAX_OFFSET
        return table

    def dataset_info_from_configs(self, **kwargs) -> tfds.core.DatasetInfo:
        metadata = kwargs.pop("metadata", None) or tfds.core.MetadataDict()
        metadata[METADATA_KEY] = self.view_table_metadata()
        return super().dataset_info_from_configs(metadata=metadata, **kwargs)

    def _as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False) -> tf.data.Dataset:
        file_format = getattr(self.info.file_format, "value", self.info.file_format)
        if file_format != "array_record":
            return super()._as_dataset(split=split, decoders=decoders, read_config=read_config,
                                       shuffle_files=shuffle_files)
        return dataset_from_data_source(self, split, decoders=decoders, shuffle=shuffle_files,
                                        seed=getattr(read_config, "shuffle_seed", None))


def dataset_from_data_source(builder, split, *, decoders=None, shuffle: bool = False,
                             seed: Optional[int] = None) -> tf.data.Dataset:
    """A `tf.data.Dataset` of the examples of `builder.as_data_source(split)`, one by one."""
    source = builder.as_data_source(split=split, decoders=decoders)
    count = len(source)
    if decoders:
        first = source[0] if count else None
        if first is None:
            raise ValueError(f"{builder.name} split {split!r} is empty")
        signature = tf.nest.map_structure(
            lambda value: tf.TensorSpec(np.shape(value), tf.as_dtype(np.asarray(value).dtype)
                                        if not isinstance(value, (bytes, str)) else tf.string),
            first,
        )
    else:
        signature = builder.info.features.get_tensor_spec()

    def examples():
        order = np.random.default_rng(seed).permutation(count) if shuffle else range(count)
        for index in order:
            yield source[int(index)]

    dataset = tf.data.Dataset.from_generator(examples, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def view_table_of(builder) -> Dict[str, Any]:
    """The `view_table` of a prepared builder: its stored metadata, else (data prepared before the
    metadata existed) the registered builder class's `VIEW_TABLE` / `MAX_OFFSET`, else {}."""
    metadata = getattr(builder.info, "metadata", None)
    try:
        stored = metadata.get(METADATA_KEY) if metadata is not None else None
    except Exception:  # noqa: BLE001  a LazyMetadataDict without metadata.json
        stored = None
    if stored:
        return dict(stored)
    view_table = getattr(builder, "VIEW_TABLE", None)
    if not view_table:
        try:
            cls = tfds.builder_cls(builder.name)
        except Exception:  # noqa: BLE001  not a registered tfrf builder
            return {}
        view_table = getattr(cls, "VIEW_TABLE", {})
        max_offset = getattr(cls, "MAX_OFFSET", None)
    else:
        max_offset = getattr(builder, "MAX_OFFSET", None)
    table = dict(view_table)
    table.setdefault("max_offset", max_offset)
    return table
