"""Reading the columns of a prepared TFDS split: features of every example, in stored order.

Shared by `tfrf.data.tfds_table.table_from_tfds` and the builders' fixed test tuples
(`tfrf.datasets.prepared`), so it imports neither.
"""
from __future__ import annotations

from typing import Dict, Sequence


def has_random_access(builder) -> bool:
    """Whether the prepared data are stored as array_record (`builder.as_data_source` reads them)."""
    try:
        formats = builder.info.available_file_formats()
    except AttributeError:
        formats = {builder.info.file_format}
    return any(getattr(fmt, "value", fmt) == "array_record" for fmt in formats)


def read_split_columns(builder, split: str, keys: Sequence[str], skip_decoding: Sequence[str] = (),
                       chunk: int = 1024) -> Dict[str, list]:
    """Reads features `keys` of every example of a prepared split, in its stored order.

    Args:
        builder: a prepared `tfds.core.DatasetBuilder` (tfrecord or array_record).
        split: the split name.
        keys: top-level feature names to read.
        skip_decoding: features read as their encoded bytes (e.g. images not needed now).
        chunk: examples per random-access read.

    Returns:
        feature name -> list of numpy values, one per example.
    """
    import tensorflow_datasets as tfds

    decoders = {key: tfds.decode.SkipDecoding() for key in skip_decoding} or None
    columns: Dict[str, list] = {key: [] for key in keys}
    if has_random_access(builder):
        source = builder.as_data_source(split=split, decoders=decoders)
        for start in range(0, len(source), chunk):
            for example in source.__getitems__(list(range(start, min(start + chunk, len(source))))):
                for key in keys:
                    columns[key].append(example[key])
        return columns
    dataset = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    for example in tfds.as_numpy(dataset):
        for key in keys:
            columns[key].append(example[key])
    return columns
