"""TF-Serving client, configuration and local development server (``tfrf.serving``).

- `Client(target, model_name, timeout)`: the gRPC client (`tfrf.serving.client`).
- `LocalModelServer(model_dir)`: a PredictionService stand-in in plain TensorFlow for trying
  the client and for tests (`tfrf.serving.server`, `tfrf serve MODEL_DIR`), with request
  limits (`RequestLimits`, `tfrf.serving.limits`) and TF-Serving's version policy
  (`tfrf.serving.repository`); production uses the
  `tensorflow/serving:2.15.1` image with `models.config` and `batching_parameters.txt` from this
  folder (see README.md).
"""
import importlib

_EXPORTS = {
    "Client": "client",
    "ServingError": "client",
    "ServerUnavailableError": "client",
    "ServingTimeoutError": "client",
    "InvalidRequestError": "client",
    "ModelNotFoundError": "client",
    "ServerBusyError": "client",
    "LocalModelServer": "server",
    "PortInUseError": "server",
    "RequestLimits": "limits",
    "BatchingParameters": "batching",
}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"tfrf.serving.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfrf.serving' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
