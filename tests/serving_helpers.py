"""Shared by the serving tests: a tiny exported generator, raw TensorProtos, `tfrf serve`
in a subprocess, and its peak memory."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from tfrf.export import export_generator
from tfrf.export.saved_model import export_saved_model, next_version

from helpers import tiny_config


def export_tiny(base_path, seed, version=None):
    """Exports a freshly initialised tiny generator (weights from `seed`); returns it."""
    tf.keras.utils.set_random_seed(seed)
    generator = export_generator(tiny_config())
    export_saved_model(generator, str(base_path), version=version)
    return generator


_EXPORTS = {}


def exported(seed):
    """(version directory, generator) of the tiny generator with weights from `seed`, exported
    once per test session under umask 022 (an export takes seconds; a copy milliseconds)."""
    if seed not in _EXPORTS:
        root = tempfile.mkdtemp(prefix="tfrf-serving-tests-")
        atexit.register(shutil.rmtree, root, True)
        previous = os.umask(0o022)
        try:
            generator = export_tiny(os.path.join(root, "model"), seed)
        finally:
            os.umask(previous)
        _EXPORTS[seed] = (os.path.join(root, "model", "1"), generator)
    return _EXPORTS[seed]


def install(seed, base_path, version=None):
    """Copies the export of `seed` to `base_path/VERSION` (default: the next free version) and
    returns its generator, the reference for what the server answers."""
    source, generator = exported(seed)
    version = next_version(str(base_path)) if version is None else version
    shutil.copytree(source, os.path.join(str(base_path), str(version)))
    return generator


def tensor(dims, dtype=types_pb2.DT_FLOAT, content=None, float_values=None):
    """A TensorProto declaring `dims` and `dtype` with exactly the given content (none by default)."""
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims]))
    if content is not None:
        proto.tensor_content = content
    if float_values is not None:
        proto.float_val.extend(float_values)
    return proto


def predict_request(inputs, model="face", signature="serving_default"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request


def peak_rss_bytes(pid):
    """VmHWM (peak resident memory) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def serve_process(arguments, timeout=120):
    """Starts `python -m tfrf serve ARGUMENTS` and waits for its `tfrf serve:` start line.

    Returns (process, line); the process has exited when its line is empty.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if "--rest-port" not in arguments:  # no REST unless asked: the default 8501 may be taken
        arguments = [*arguments, "--rest-port", "0"]
    process = subprocess.Popen([sys.executable, "-m", "tfrf", "serve", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("tfrf serve:") or not line and process.poll() is not None:
            break
    return process, line


def stop_process(process):
    """Terminates the server; returns what it wrote to stderr."""
    process.terminate()
    try:
        return process.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1]


def reference_outputs(generator, inputs):
    return generator({key: np.asarray(value) for key, value in inputs.items()}).numpy()
