"""PyTorch state dicts for the metric networks, read in one place and assigned key by key.

The metric networks (LPIPS backbones and lin layers, Inception v3 for FID) are defined by
PyTorch checkpoints: torchvision's `alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth` /
`inception_v3_google-0cc3c7bd.pth`, the `lpips` package's `weights/v0.1/alex.pth`, pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth`. A state dict reaches a converter as

- a path to a `.pth`/`.pt` file (read with PyTorch, an optional dependency, imported here only),
- a path to an `.npz` file holding the same keys (what machines without PyTorch use), or
- a mapping from key to array (numpy arrays, or anything with `.numpy()`: torch tensors).

A converter describes its network as a table `key -> (variable, transform)` and hands it to
`prepare_assignments`, which refuses missing keys, unused keys and shape mismatches by name; only
when every table checks out does `apply_assignments` change variables (timm's `load_pretrained`
pattern).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Tuple, Union

import numpy as np

StateSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]
Transform = Callable[[np.ndarray], np.ndarray]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_LISTED_KEYS = 8  # keys named in an error message before "... and N more"


def is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def _read_torch(path: str, what: str) -> Mapping[str, Any]:
    try:
        import torch  # optional: only .pth files need it
    except ImportError as error:
        from tfrf.dependencies import MissingDependency

        raise MissingDependency(
            f"{what}: reading {path} needs PyTorch (pip install torch); or convert the file once, on a "
            f"machine with PyTorch, to .npz: python -c \"import torch, numpy; s = torch.load('{path}', "
            f"map_location='cpu'); numpy.savez('weights.npz', **{{k: v.numpy() for k, v in s.items()}})\" "
            f"and pass the .npz"
        ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # PyTorch < 1.13 has no weights_only
        state = torch.load(path, map_location="cpu")
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    return state


def read_state_dict(source: StateSource, what: str = "state dict") -> Dict[str, np.ndarray]:
    """The state dict of `source` as `{key: numpy array}` (PyTorch layout, unchanged).

    Args:
        source: a `.pth`/`.pt` path (needs PyTorch), an `.npz` path, or a mapping of arrays.
        what: the name used in error messages (e.g. "LPIPS backbone").
    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unknown file type or a mapping with non-string keys.
        ImportError: a `.pth` file and no PyTorch.
    """
    if is_path(source):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what}: weights file {path} does not exist")
        lower = path.lower()
        if lower.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                return {key: np.asarray(archive[key]) for key in archive.files}
        if lower.endswith(TORCH_SUFFIXES):
            state = _read_torch(path, what)
        else:
            raise ValueError(
                f"{what}: cannot read {path}; expected a PyTorch state dict ({', '.join(TORCH_SUFFIXES)}) "
                f"or an .npz with the same keys"
            )
    elif isinstance(source, Mapping):
        state = source
    else:
        raise ValueError(f"{what}: expected a file path or a mapping of arrays, got {type(source).__name__}")
    result = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise ValueError(f"{what}: state dict keys must be strings, got {key!r}")
        result[key] = _to_numpy(value)
    return result


def fingerprint(source: StateSource) -> str:
    """A sha256 hex digest of a state source's content: the file's bytes, or the mapping's sorted
    keys, dtypes, shapes and values. Equal content gives an equal fingerprint wherever it lives."""
    digest = hashlib.sha256()
    if is_path(source):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file {path} does not exist")
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    state = read_state_dict(source)
    for key in sorted(state):
        value = np.ascontiguousarray(state[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _named(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_LISTED_KEYS])
    return shown + (f" ... and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else "")


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """A PyTorch convolution weight (out, in, kh, kw) as a Keras kernel (kh, kw, in, out)."""
    if weight.ndim != 4:
        raise ValueError(f"convolution weight must be 4-D (out, in, kh, kw), got shape {weight.shape}")
    return np.transpose(weight, (2, 3, 1, 0))


def identity(value: np.ndarray) -> np.ndarray:
    return value


def prepare_assignments(state: Mapping[str, np.ndarray], plan: Mapping[str, Tuple[Any, Transform]], what: str,
                        ignored_prefixes: Tuple[str, ...] = (), ignored_suffixes: Tuple[str, ...] = ()
                        ) -> List[Tuple[Any, np.ndarray]]:
    """Check `state` against `plan` and return the `(variable, converted value)` pairs.

    Args:
        state: `{key: array}` in PyTorch layout.
        plan: `{key: (tf.Variable, transform)}`; every key must be present in `state`.
        what: the name used in error messages.
        ignored_prefixes / ignored_suffixes: keys of `state` the network deliberately does not use
            (a classifier head `fc.`, BatchNorm's `num_batches_tracked`); every other key of
            `state` must be in `plan`.
    Raises:
        ValueError: naming the missing keys, the unused keys, or each key whose shape does not
            match its variable.
    """
    missing = [key for key in plan if key not in state]
    unused = [key for key in state if key not in plan
              and not key.startswith(tuple(ignored_prefixes)) and not key.endswith(tuple(ignored_suffixes))]
    problems = []
    if missing:
        problems.append(f"missing keys: {_named(missing)}")
    if unused:
        problems.append(f"unused keys: {_named(unused)}")
    if problems:
        raise ValueError(f"{what}: state dict does not match the network; " + "; ".join(problems))
    assignments = []
    mismatched = []
    for key, (variable, transform) in plan.items():
        value = transform(np.asarray(state[key]))
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append(f"{key} has shape {tuple(state[key].shape)}, the network needs "
                              f"{tuple(variable.shape)} after conversion")
        assignments.append((variable, value))
    if mismatched:
        shown = "; ".join(mismatched[:_LISTED_KEYS])
        more = f" ... and {len(mismatched) - _LISTED_KEYS} more" if len(mismatched) > _LISTED_KEYS else ""
        raise ValueError(f"{what}: shape mismatch: {shown}{more}")
    return assignments


def apply_assignments(assignments: Iterable[Tuple[Any, np.ndarray]]) -> None:
    """Assign each checked value to its variable (in the variable's dtype)."""
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype.as_numpy_dtype))


def assign_state(state: Mapping[str, np.ndarray], plan: Mapping[str, Tuple[Any, Transform]], what: str,
                 ignored_prefixes: Tuple[str, ...] = (), ignored_suffixes: Tuple[str, ...] = ()) -> None:
    """`prepare_assignments`, then `apply_assignments`: nothing is assigned unless every key of
    `plan` is present, no other key is left over, and every shape matches."""
    apply_assignments(prepare_assignments(state, plan, what, ignored_prefixes, ignored_suffixes))
