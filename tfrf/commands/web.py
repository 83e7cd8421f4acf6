"""`tfrf web`: serve a page that animates a face in the browser with a TFLite face export.

    tfrf web --model face.tflite [--port 8080] [--host 127.0.0.1] [--assets DIR]

The page runs the model with LiteRT.js (WASM/XNNPACK; WebGPU where the browser has it) and
tracks the face with MediaPipe's face mesh, both in the browser: pick source photos, then the
camera (or a video file) drives, and the generated face appears beside the input. The server
listens on loopback unless --host says otherwise and serves only the page, the model and the
pinned JS/WASM files of LiteRT.js and MediaPipe face mesh, installed at build time with npm
(--assets, default $TFRF_WEB_ASSETS or ~/.cache/tfrf/web; a missing install names the npm line).
The page draws the pose maps itself (`tfrf/web/static/draw.js`, equal to
`tfrf.pose.face.draw_landmarks`) and runs the export's `encode_sources` / `render`, so float and
full-int8 face exports serve alike. A truncated or foreign model, or one that is no face export, is refused before
anything is served (exit status 2).
"""
from __future__ import annotations

import argparse

from tfrf.commands.common import documented_parser


def register(subparsers) -> None:
    parser = documented_parser(subparsers, "web", "animate a face in the browser (LiteRT.js + face mesh)", __doc__)
    parser.add_argument("--model", required=True, help="a face .tflite from `tfrf export tflite` (any --quantize)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    parser.add_argument("--assets", help="folder of the npm install (default $TFRF_WEB_ASSETS or ~/.cache/tfrf/web)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfrf.web.server import WebServer

    server = WebServer(args.model, host=args.host, port=args.port, assets_dir=args.assets)
    print(f"serving {args.model} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0
