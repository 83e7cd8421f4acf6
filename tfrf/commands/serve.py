"""`tfrf serve MODEL_DIR`: a local stand-in for TF-Serving's gRPC PredictionService.

For trying `tfrf.serving.Client` and for tests, not for production (use the
`tensorflow/serving:2.15.1` image, see serving/README.md). Serves Predict and GetModelMetadata
for the latest version of every model under MODEL_DIR, on loopback by default.
"""
from __future__ import annotations

import argparse


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfrf.serving.batching import BatchingParameters
    from tfrf.serving.server import LocalModelServer

    batching = BatchingParameters.from_file(args.batching_parameters) if args.batching_parameters else None
    server = LocalModelServer(args.model_dir, host=args.host, port=args.port, model_name=args.model_name,
                              batching=batching, poll_seconds=args.poll_seconds)
    server.start()
    served = ", ".join(f"{name} v{version}" for name, version in server.repository.refresh().items())
    print(f"tfrf serve: {served} on {server.address} (local stand-in, not for production); Ctrl-C stops",
          flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
