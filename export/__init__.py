"""SavedModel and TFLite export (``tfrf.export``).

Every export builds the generator with the pure-TF `gather` warp (`Addons>Resampler` exists
neither in stock TF-Serving nor in TFLite); weights trained with the `tfa` backend load into it
unchanged, since the variables are the same.

- `tfrf.export.saved_model`: `export_saved_model(generator, MODEL_DIR/NAME)` writes the next
  numeric version atomically for TF-Serving (signatures `serving_default` and `serving_uint8`).
- `tfrf.export.tflite`: `convert(generator, num_sources, quantize)` gives a builtin-ops-only
  flatbuffer with the signatures `encode_sources` and `render` (face models also `encode_crops`
  and `render_landmarks`, which take landmarks; see export/README.md), every op one that
  TFLite's GPU delegate accepts (`tfrf.export.tflite_gpu`).
- Latency, size and throughput figures: `python -m tfrf.benchmarks.tflite_render` (`tfrf.benchmarks`).
"""
from tfrf.export.model import export_config, export_generator

__all__ = ["export_config", "export_generator"]
