"""`tfrf serve MODEL_DIR`: a local stand-in for TF-Serving's gRPC PredictionService.

For trying `tfrf.serving.Client` and for tests, not for production (use the
`tensorflow/serving:2.15.1` image, see serving/README.md). Serves Predict and GetModelMetadata
for the highest loadable version of every model under MODEL_DIR, on loopback by default, with
request limits sized to the model and the machine (options below), one server per port and
optional TLS.
"""
from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve exported SavedModels over gRPC (local stand-in)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="MODEL_DIR/NAME/VERSION (several models) or one model's MODEL_DIR/VERSION")
    parser.add_argument("--model-name", help="name of the model when MODEL_DIR is one model's base path")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500, TF-Serving's)")
    parser.add_argument("--batching-parameters", metavar="FILE",
                        help="TF-Serving batching parameters file (e.g. serving/batching_parameters.txt); "
                             "enables batching")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often to look for new model versions (0: never)")
    limits = parser.add_argument_group("request limits (checked on declared shapes before decoding)")
    limits.add_argument("--max-batch-size", type=int, metavar="B",
                        help="largest batch per request (default: what --max-request-bytes allows for one-source "
                             "examples, at most 1024, at most the batching max_batch_size)")
    limits.add_argument("--max-sources", type=int, default=16, metavar="K",
                        help="largest number of sources K (default 16)")
    limits.add_argument("--max-request-bytes", type=int, metavar="BYTES",
                        help="largest declared input size of a request (default: half the machine's memory over "
                             "the pending and running requests, 1 MiB to 511 MiB)")
    limits.add_argument("--max-concurrent-requests", type=int, metavar="N",
                        help="requests decoded and running at once; others wait until their deadline (default 4, "
                             "or enough to fill every batch when batching)")
    limits.add_argument("--max-pending-requests", type=int, default=128, metavar="N",
                        help="RPCs accepted at once, running or waiting; more get RESOURCE_EXHAUSTED (default 128)")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls-cert", metavar="PEM", help="certificate chain: serve over TLS (with --tls-key)")
    tls.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.set_defaults(func=run)


def _limits(args: argparse.Namespace):
    from tfrf.serving.limits import RequestLimits

    return RequestLimits(max_batch_size=args.max_batch_size, max_sources=args.max_sources,
                         max_request_bytes=args.max_request_bytes,
                         max_concurrent_requests=args.max_concurrent_requests,
                         max_pending_requests=args.max_pending_requests)


def _start(args: argparse.Namespace):
    from tfrf.serving.batching import BatchingParameters
    from tfrf.serving.server import LocalModelServer

    batching = BatchingParameters.from_file(args.batching_parameters) if args.batching_parameters else None
    server = LocalModelServer(args.model_dir, host=args.host, port=args.port, model_name=args.model_name,
                              batching=batching, poll_seconds=args.poll_seconds, limits=_limits(args),
                              tls_cert=args.tls_cert, tls_key=args.tls_key)
    return server.start()


def run(args: argparse.Namespace) -> int:
    logger = logging.getLogger("tfrf.serving")  # model loads and load failures, one line each
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    server = _start(args)  # a taken port (PortInUseError, an OSError) or no loadable model: one line, status 2
    served = ", ".join(f"{name} v{version}" for name, version in server.repository.served().items())
    limits = server.limits
    print(f"tfrf serve: {served} on {server.address}{' (TLS)' if server.credentials else ''} "
          f"(local stand-in, not for production); Ctrl-C stops", flush=True)
    print(f"tfrf serve: limits: {limits.max_request_bytes} bytes and K <= {limits.max_sources} per request, "
          f"{limits.max_concurrent_requests} running, {limits.max_pending_requests} pending", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
