"""`tfrf serve MODEL_DIR`: a local stand-in for TF-Serving's model server (gRPC and REST).

For trying `tfrf.serving.Client` and for tests, not for production (use the
`tensorflow/serving:2.15.1` image, see serving/README.md). Serves Predict, GetModelMetadata and
GetModelStatus over gRPC, and TF-Serving's REST API with Prometheus metrics, for the highest
loadable version of every model under MODEL_DIR, on loopback by default, with request limits
sized to the model and the machine (options below), one server per port and optional (mutual)
TLS. SIGTERM drains like Ctrl-C: both ports stop accepting, requests in flight get
--drain-seconds to finish, and the process exits with status 0.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve exported SavedModels over gRPC (local stand-in)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="MODEL_DIR/NAME/VERSION (several models) or one model's MODEL_DIR/VERSION")
    parser.add_argument("--model-name", help="name of the model when MODEL_DIR is one model's base path")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500, TF-Serving's)")
    parser.add_argument("--rest-port", type=int, default=8501,
                        help="REST API and Prometheus metrics port (default 8501, TF-Serving's; 0: no REST)")
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
    limits.add_argument("--max-calls-per-client", type=int, metavar="N",
                        help="calls one client connection may hold at once; more get RESOURCE_EXHAUSTED (default: "
                             "an eighth of --max-pending-requests, at least 4)")
    limits.add_argument("--request-read-seconds", type=float, default=30.0, metavar="S",
                        help="time a call has to deliver its request (headers and body); slower ones are dropped "
                             "(default 30)")
    parser.add_argument("--drain-seconds", type=float, default=10.0, metavar="S",
                        help="on SIGTERM or Ctrl-C, time requests in flight get to finish (default 10)")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls-cert", metavar="PEM", help="certificate chain: serve over TLS (with --tls-key)")
    tls.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    tls.add_argument("--tls-client-ca", metavar="PEM",
                     help="require client certificates signed by this CA on both ports (mutual TLS)")
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
                              tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                              rest_port=args.rest_port or None, peer_share=args.max_calls_per_client,
                              body_seconds=args.request_read_seconds)
    return server.start()


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM drains exactly like Ctrl-C


def run(args: argparse.Namespace) -> int:
    logger = logging.getLogger("tfrf.serving")  # model loads and load failures, one line each
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    from tfrf.serving.server import insecure_bind_warning

    warning = insecure_bind_warning(args.host, tls=bool(args.tls_cert))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    server = _start(args)  # a taken port (PortInUseError, an OSError) or no loadable model: one line, status 2
    signal.signal(signal.SIGTERM, _terminate)
    served = ", ".join(f"{name} v{version}" for name, version in server.repository.served().items())
    limits = server.limits
    tls = " (mutual TLS)" if server.mutual_tls else " (TLS)" if server.credentials else ""
    rest = f", REST on {server.rest_address}" if server.rest_port else ""
    print(f"tfrf serve: {served} on {server.address}{tls}{rest} "
          f"(local stand-in, not for production); Ctrl-C or SIGTERM stops", flush=True)
    print(f"tfrf serve: limits: {limits.max_request_bytes} bytes and K <= {limits.max_sources} per request, "
          f"{limits.max_concurrent_requests} running, {limits.max_pending_requests} pending", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the drain short
        server.stop(args.drain_seconds)
    return 0
