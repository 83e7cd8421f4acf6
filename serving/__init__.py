"""TF-Serving client, configuration and local development server (``tfrf.serving``).

- `Client(target, model_name, timeout)`: the gRPC client, or REST with an `http(s)://` target
  (`tfrf.serving.client`).
- `LocalModelServer(model_dir)`: a TF-Serving stand-in in plain TensorFlow for trying the
  client and for tests (`tfrf.serving.server`, `tfrf serve MODEL_DIR`): gRPC Predict,
  GetModelMetadata, GetModelStatus (`tfrf.serving.service`), the REST API (`tfrf.serving.rest`)
  and Prometheus metrics (`tfrf.serving.metrics`), with request limits (`RequestLimits`,
  `tfrf.serving.limits`) and TF-Serving's version policy (`tfrf.serving.repository`);
  production uses the
  `tensorflow/serving:2.15.1` image with `models.config`, `batching_parameters.txt` and
  `monitoring.config` from this
  folder (see README.md).
"""
from tfrf.serving.batching import BatchingParameters
from tfrf.serving.client import (Client, InvalidRequestError, ModelNotFoundError, ServerBusyError,
                                 ServerUnavailableError, ServingError, ServingTimeoutError)
from tfrf.serving.limits import RequestLimits
from tfrf.serving.server import LocalModelServer, PortInUseError

__all__ = [
    "BatchingParameters",
    "Client",
    "InvalidRequestError",
    "LocalModelServer",
    "ModelNotFoundError",
    "PortInUseError",
    "RequestLimits",
    "ServerBusyError",
    "ServerUnavailableError",
    "ServingError",
    "ServingTimeoutError",
]
