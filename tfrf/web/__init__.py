"""`tfrf web`: a page that animates a face in the browser with the TFLite face export.

The server (`tfrf.web.server`) serves, on loopback by default, only: the page
(`static/index.html`, `static/app.js`), the exported model, a JSON of the page's settings
(the model's size and K, the crop margin and `tfrf.pose.face.MEDIAPIPE_TO_68`), and the pinned
JS/WASM files of three npm packages installed at build time (`ASSET_PACKAGES`: LiteRT.js and
MediaPipe's face mesh, which ships its model files). The page loads nothing from anywhere else.
"""
