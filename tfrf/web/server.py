"""The static server of `tfrf web`: the page, the model, its settings and the pinned npm assets,
nothing else.

Assets are the npm packages in `ASSET_PACKAGES`, installed at build time into a folder
(`npm install --prefix DIR ...`, see `npm_command`); `find_assets` checks their versions. Every
response carries `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy:
require-corp`, so the page is cross-origin isolated and LiteRT.js may use its threaded WASM
build. Only the files listed by `routes` are served (no directory listing, no other path).
"""
from __future__ import annotations

import json
import mimetypes
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

# npm package -> (pinned version, the files of it the page loads)
ASSET_PACKAGES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "@litertjs/core": ("2.5.3", (
        "dist/index.js", "wasm/litert_wasm_internal.js", "wasm/litert_wasm_internal.wasm",
        "wasm/litert_wasm_threaded_internal.js", "wasm/litert_wasm_threaded_internal.wasm",
        "wasm/litert_wasm_compat_internal.js", "wasm/litert_wasm_compat_internal.wasm")),
    "@litertjs/wasm-utils": ("2.5.3", ("dist/index.js",)),
    "@mediapipe/face_mesh": ("0.4.1657299874", (
        "face_mesh.js", "face_mesh.binarypb", "face_mesh_solution_packed_assets.data",
        "face_mesh_solution_packed_assets_loader.js", "face_mesh_solution_simd_wasm_bin.data",
        "face_mesh_solution_simd_wasm_bin.js", "face_mesh_solution_simd_wasm_bin.wasm",
        "face_mesh_solution_wasm_bin.js", "face_mesh_solution_wasm_bin.wasm")),
}
ASSETS_ENV = "TFRF_WEB_ASSETS"
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGE_FILES = ("index.html", "app.js", "draw.js", "mesh.html")
CONTENT_TYPES = {".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html; charset=utf-8",
                 ".json": "application/json"}


def default_assets_dir() -> str:
    """`$TFRF_WEB_ASSETS`, else ~/.cache/tfrf/web (where `.ci/run` installs the packages)."""
    return os.environ.get(ASSETS_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tfrf", "web")


def npm_command(assets_dir: str) -> str:
    """The npm line that installs the pinned packages into `assets_dir`."""
    packages = " ".join(f"{name}@{version}" for name, (version, _) in ASSET_PACKAGES.items())
    return f"npm install --prefix {assets_dir} {packages}"


def find_assets(assets_dir: Optional[str] = None) -> str:
    """The `node_modules` folder under `assets_dir` holding every pinned package and file.

    Raises:
        FileNotFoundError: naming what is missing and the npm line that installs it.
        ValueError: a package of another version.
    """
    assets_dir = os.path.abspath(assets_dir or default_assets_dir())
    modules = os.path.join(assets_dir, "node_modules")
    for name, (version, files) in ASSET_PACKAGES.items():
        manifest = os.path.join(modules, name, "package.json")
        if not os.path.isfile(manifest):
            raise FileNotFoundError(f"the web assets are not installed ({name} missing in {modules}); "
                                    f"install them with: {npm_command(assets_dir)}")
        with open(manifest, encoding="utf-8") as stream:
            found = json.load(stream).get("version")
        if found != version:
            raise ValueError(f"{name} {found} in {modules} is not the pinned {version}; "
                             f"install it with: {npm_command(assets_dir)}")
        for path in files:
            if not os.path.isfile(os.path.join(modules, name, path)):
                raise FileNotFoundError(f"{name} in {modules} lacks {path}; reinstall with: {npm_command(assets_dir)}")
    return modules


def routes(model_path: str, modules: str, settings: dict) -> Dict[str, object]:
    """URL path -> a file path (str) or the bytes to serve."""
    table: Dict[str, object] = {"/": os.path.join(STATIC, "index.html"), "/model.tflite": model_path,
                                "/settings.json": json.dumps(settings).encode()}
    for name in PAGE_FILES:
        table[f"/{name}"] = os.path.join(STATIC, name)
    for package, (_, files) in ASSET_PACKAGES.items():
        for path in files:
            table[f"/vendor/{package.lstrip('@')}/{path}"] = os.path.join(modules, package, path)
    return table


def make_handler(table: Dict[str, object]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            target = table.get(path)
            if target is None:
                self.send_error(404, "not served")
                return
            if isinstance(target, bytes):
                body, suffix = target, os.path.splitext(path)[1]
            else:
                with open(target, "rb") as stream:
                    body = stream.read()
                suffix = os.path.splitext(target)[1]
            content_type = CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # noqa: A002 (http.server's name): quiet
            pass

    return Handler


def drawing_table() -> dict:
    """What the page's `draw.js` needs to draw as `tfrf.pose.face.draw_landmarks` does: the start
    and end landmark of every segment, and per part in drawing order its segment range
    [first, last), colour and the last landmark of each of its lines (`tips`)."""
    from tfrf.pose.face import PART_COLORS, part_polylines
    from tfrf.pose.face_graph import segment_table

    starts, ends, ranges = segment_table()
    parts = [{"name": part, "first": first, "last": last, "color": [int(value) for value in PART_COLORS[part]],
              "tips": [int(indices[-1]) for name, indices in part_polylines() if name == part]}
             for part, first, last in ranges]
    return {"starts": [int(value) for value in starts], "ends": [int(value) for value in ends], "parts": parts}


def page_settings(model_path: str, require_landmarks: bool = True) -> dict:
    """What the page needs to know beside the model: its crop size and K (read from the model's
    `render` signature), the dataset's crop margin, the 468 -> 68 table and the drawing's table
    (`drawing_table`). The page draws the poses itself and runs `encode_sources` / `render`, so
    float exports (with the landmark signatures) and full-int8 face exports (without) both serve;
    a model that is neither is refused unless `require_landmarks` is False (benchmarks time its
    `render` in the page)."""
    from tfrf.export.tflite import ENCODE_CROPS_SIGNATURE, RENDER_LANDMARKS_SIGNATURE, RENDER_SIGNATURE, load_interpreter
    from tfrf.export.tflite_drawing import int8_face_shapes
    from tfrf.pose.face import MEDIAPIPE_TO_68

    name = f"TFLite model {model_path}"
    interpreter = load_interpreter(model_path)  # checks the flatbuffer first
    signatures = interpreter.get_signature_list()
    missing = [key for key in (ENCODE_CROPS_SIGNATURE, RENDER_LANDMARKS_SIGNATURE) if key not in signatures]
    if missing:
        try:
            int8_face_shapes(interpreter, name)  # a face export without them (full-int8)
        except ValueError as error:
            if require_landmarks:
                raise ValueError(f"{name} has no {' / '.join(missing)} signature and is no full-int8 face export "
                                 f"({str(error).replace(name, 'it')}); export a face model with tfrf export "
                                 "tflite") from error
    if RENDER_SIGNATURE not in signatures:
        raise ValueError(f"{name} is not a tfrf export (signatures {sorted(signatures)})")
    details = interpreter.get_signature_runner(RENDER_SIGNATURE).get_input_details()["source_images"]
    _, num_sources, height, width, _ = (int(dim) for dim in details["shape"])
    return {"size": height, "width": width, "num_sources": num_sources, "margin": 0.25,
            "mediapipe_to_68": list(MEDIAPIPE_TO_68), "drawing_table": drawing_table()}


class WebServer:
    """`tfrf web`'s server on `host:port` (port 0: any free one); `url` once started."""

    def __init__(self, model_path: str, host: str = "127.0.0.1", port: int = 8080, assets_dir: Optional[str] = None,
                 require_landmarks: bool = True):
        settings = page_settings(model_path, require_landmarks)  # the model is checked before anything else
        table = routes(os.path.abspath(model_path), find_assets(assets_dir), settings)
        self.httpd = ThreadingHTTPServer((host, port), make_handler(table))
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()
