"""Reading an exported TFLite flatbuffer without an interpreter: its operator names, the
builtin-only check, and the check that a file is a whole model before an interpreter sees it
(`tfrf.export.tflite` re-exports all three)."""
from __future__ import annotations

import struct
from typing import List, Union


def operator_names(model: Union[bytes, bytearray]) -> List[str]:
    """Names of the operator codes a flatbuffer uses: builtin names (e.g. "CONV_2D"), and
    "CUSTOM:<code>" for custom and Flex ops (e.g. "CUSTOM:FlexConv2D")."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin_names = {
        value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
    }
    parsed = schema.Model.GetRootAsModel(bytearray(model), 0)
    names = []
    for index in range(parsed.OperatorCodesLength()):
        code = parsed.OperatorCodes(index)
        # Codes < 127 live in the deprecated int8 field; the larger of the two is the real one.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            names.append(f"CUSTOM:{custom.decode() if custom else ''}")
        else:
            names.append(builtin_names.get(builtin, f"UNKNOWN_{builtin}"))
    return sorted(set(names))


def check_builtin_ops(model: Union[bytes, bytearray]) -> List[str]:
    """The builtin operator names of `model`; raises ValueError naming any Flex/custom op."""
    names = operator_names(model)
    foreign = [name for name in names if name.startswith("CUSTOM:") or name.startswith("UNKNOWN_")]
    if foreign:
        raise ValueError(f"the TFLite model uses non-builtin ops {foreign}; only builtin ops are allowed")
    return names


FILE_IDENTIFIER = b"TFL3"


class _BoundedBytes(bytes):
    """Bytes whose indexing and slicing raise instead of wrapping or clipping, so that reading a
    flatbuffer through the generated schema code fails at the first reference outside it
    (`struct` and `numpy.frombuffer` reads already raise past the end)."""

    def __getitem__(self, index):
        if isinstance(index, slice):
            if index.start is None or index.stop is None or not 0 <= index.start <= index.stop <= len(self):
                raise IndexError(f"bytes {index.start}..{index.stop} lie outside the file's {len(self)} bytes")
        elif not 0 <= index < len(self):
            raise IndexError(f"byte {index} lies outside the file's {len(self)} bytes")
        return super().__getitem__(index)


def check_flatbuffer(model: Union[bytes, bytearray], name: str = "the model") -> None:
    """Raises a ValueError naming `name` unless `model` is a whole TFLite flatbuffer.

    The interpreter checks nothing before it follows a model's offsets, and crashes (SIGSEGV) on
    a truncated file. The checks here: the size and the "TFL3" file identifier (an empty or
    foreign file), the root table's offset, then every table, vector and string of the model
    read through TFLite's generated schema code (`ModelT`, all of it that the interpreter reads)
    with every reference bounds-checked, then the bounds of the buffers that a large model keeps
    after the flatbuffer. Every prefix of a model fails them. TFLite's C++ flatbuffer verifier is
    not reachable from Python in TensorFlow 2.15, so a model whose bytes were altered in place
    (not cut) may still pass.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    size = len(model)
    if size == 0:
        raise ValueError(f"{name} is empty, not a TFLite model")
    if size < 8 or bytes(model[4:8]) != FILE_IDENTIFIER:
        raise ValueError(f"{name} is not a TFLite model (no {FILE_IDENTIFIER.decode()} file identifier)")
    (root,) = struct.unpack_from("<I", model, 0)
    if not 8 <= root <= size - 4:
        raise ValueError(f"{name} is truncated or corrupt: its root table lies outside its {size} bytes")
    try:
        parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(_BoundedBytes(model), 0))
    except (struct.error, IndexError, ValueError):  # a reference outside the bytes
        raise ValueError(f"{name} is truncated or corrupt (it refers to data beyond its {size} bytes)") from None
    except Exception as error:
        raise ValueError(f"{name} is corrupt ({type(error).__name__}: {error})") from None
    if not parsed.subgraphs:
        raise ValueError(f"{name} is not a usable TFLite model: it has no subgraph")
    for index, buffer in enumerate(parsed.buffers or []):
        offset, length = getattr(buffer, "offset", 0) or 0, getattr(buffer, "size", 0) or 0
        if offset > 1 and offset + length > size:
            raise ValueError(f"{name} is truncated: buffer {index} lies at bytes {offset}..{offset + length} "
                             f"of its {size} bytes")
