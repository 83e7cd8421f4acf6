"""`tfrf export`: the generator as a TF-Serving SavedModel or an on-device TFLite model.

    tfrf export saved-model --run runs/df --out MODEL_DIR/deepfashion
    tfrf export tflite --run runs/face --k 2 --quantize float16 --out face.tflite
    tfrf export saved-model --preset deepfashion --weights CKPT_OR_WEIGHTS_H5 --out MODEL_DIR/deepfashion

Both build the generator with the pure-TF `gather` warp; weights trained with `tfa` load
unchanged. The library halves are `tfrf.export.saved_model` and `tfrf.export.tflite`.
"""
from __future__ import annotations

import argparse

QUANTIZATIONS = ("none", "float16", "dynamic-int8", "full-int8")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    from tfrf import runs

    runs.add_model_arguments(parser, allow_untrained=True, default_preset="voxceleb2")
    parser.add_argument("--width-multiplier", type=float, help="override the config's width multiplier")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="override the config's image size (multiples of 32; the network is fully "
                             "convolutional, so trained weights serve other sizes)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export the generator for TF-Serving or TFLite",
                                   description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="export_format", metavar="FORMAT", required=True)

    saved = formats.add_parser("saved-model", help="SavedModel in the TF-Serving layout MODEL_DIR/NAME/VERSION")
    _model_arguments(saved)
    saved.add_argument("--out", required=True, help="the model's base path MODEL_DIR/NAME")
    saved.add_argument("--version", type=int, help="version number (default: the next free integer)")
    saved.set_defaults(func=run_saved_model)

    lite = formats.add_parser("tflite", help="TFLite flatbuffer with encode_sources and render signatures")
    _model_arguments(lite)
    lite.add_argument("--k", type=int, default=2, help="number of sources K the model takes (default 2)")
    lite.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                      help="none (float32), float16 weights or dynamic-range int8 weights")
    lite.add_argument("--out", required=True, help="the .tflite file to write")
    lite.set_defaults(func=run_tflite)


def _generator(args: argparse.Namespace, tflite: bool, num_sources: int = 1):
    from tfrf import runs
    from tfrf.export.model import export_generator
    from tfrf.models import GENERATORS

    config, weights = runs.resolve_model(args)
    limit = getattr(GENERATORS.get(config.architecture), "max_sources", None)
    if limit is not None and num_sources > limit:
        raise ValueError(f"--k {num_sources}: the {config.architecture} generator takes at most {limit} source(s); "
                         f"use --k {limit}")
    height, width = args.image_size or (None, None)
    overrides = {"width_multiplier": args.width_multiplier, "image_height": height, "image_width": width}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if overrides:
        config = config.replace(**overrides)
    return export_generator(config, weights, tflite=tflite)


def run_saved_model(args: argparse.Namespace) -> int:
    from tfrf.export.photos import photos_supported
    from tfrf.export.saved_model import export_saved_model

    generator = _generator(args, tflite=False)
    path = export_saved_model(generator, args.out, version=args.version)
    photos = ", photos" if photos_supported(generator.config) else ""
    print(f"wrote {path} (signatures serving_default, serving_uint8{photos})")
    return 0


def run_tflite(args: argparse.Namespace) -> int:
    import os

    from tfrf.export.tflite import export_tflite

    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    path = export_tflite(_generator(args, tflite=True, num_sources=args.k), args.k, args.out, quantize=args.quantize)
    print(f"wrote {path} ({os.path.getsize(path) / 2**20:.2f} MiB, K = {args.k}, quantize {args.quantize})")
    return 0
