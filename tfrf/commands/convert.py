"""`tfrf convert`: official checkpoints of other implementations as tfrf weights.

    tfrf convert gfla --checkpoint latest_net_G.pth --preset deepfashion --out gfla_df.weights.h5
    tfrf convert gfla --checkpoint latest_net_G.npz --preset market1501 --out gfla_market.weights.h5

`gfla` reads GFLA's generator state dict (`.pth` needs PyTorch; the same dict saved as `.npz`
does not), checks every key against `GFLAGenerator` (missing, unused and mis-shaped keys are
refused by name), and writes the Keras weights atomically, with the ModelConfig beside them
(`NAME.config.json`) so that every other command can load the pair:

    tfrf generate --weights gfla_df.weights.h5 --config gfla_df.config.json ...
"""
from __future__ import annotations

import argparse
import os

WEIGHTS_SUFFIX = ".weights.h5"


def register(subparsers):
    parser = subparsers.add_parser("convert", help="official checkpoints of other implementations -> tfrf weights")
    parser.set_defaults(func=lambda args: _print_help(parser))
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    gfla = kinds.add_parser(
        "gfla",
        help="GFLA's latest_net_G.pth (or the same state dict as .npz) -> GFLAGenerator .weights.h5",
        description="Convert GFLA's official generator checkpoint (Ren et al., CVPR 2020) to a GFLAGenerator.",
    )
    gfla.add_argument("--checkpoint", required=True, help="latest_net_G.pth, or its state dict saved as .npz")
    from tfrf.config import PRESETS

    gfla.add_argument("--preset", choices=sorted(PRESETS),
                      help="the preset the checkpoint was trained for (deepfashion, market1501, shapenet_chairs)")
    gfla.add_argument("--config", help="a ModelConfig JSON instead of --preset (architecture is set to gfla)")
    gfla.add_argument("--out", required=True, help=f"output weights file, ending in {WEIGHTS_SUFFIX}")
    gfla.set_defaults(func=run_gfla)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def gfla_model_config(args):
    """The GFLA ModelConfig of `--preset` or `--config` (the one swappable model-loading step)."""
    from tfrf.config import ModelConfig

    if args.config:
        from tfrf.runs import read_model_config

        config = read_model_config(args.config)
    elif args.preset:
        config = ModelConfig.preset(args.preset)
    else:
        raise ValueError("tfrf convert gfla: give --preset NAME (e.g. deepfashion, market1501) or --config JSON")
    return config.replace(architecture="gfla")


def config_path_for(weights_path: str) -> str:
    """`NAME.weights.h5` -> `NAME.config.json`."""
    return weights_path[: -len(WEIGHTS_SUFFIX)] + ".config.json"


def save_weights_atomically(generator, path: str) -> None:
    """`generator.save_weights` into a temporary directory, then `tfrf.io.atomic_write` to `path`."""
    import shutil
    import tempfile

    from tfrf.io import atomic_write

    directory = tempfile.mkdtemp(prefix="tfrf-convert-")
    try:
        temporary = os.path.join(directory, "generator" + WEIGHTS_SUFFIX)
        generator.save_weights(temporary)
        with open(temporary, "rb") as source:
            atomic_write(path, lambda stream: shutil.copyfileobj(source, stream))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_gfla(args) -> int:
    from tfrf.io import atomic_write_text
    from tfrf.models.gfla_convert import convert_gfla_state_dict, read_state_dict

    if not args.out.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"--out {args.out} must end in {WEIGHTS_SUFFIX} (Keras weights file)")
    config = gfla_model_config(args)
    try:
        state = read_state_dict(args.checkpoint)
    except ImportError as error:  # a .pth without PyTorch: the user's choice of file, one line
        raise ValueError(str(error)) from None
    generator = convert_gfla_state_dict(state, config)
    save_weights_atomically(generator, args.out)
    config_path = config_path_for(args.out)
    atomic_write_text(config_path, config.to_json() + "\n")
    print(f"converted {len(state)} tensors of {args.checkpoint} into GFLAGenerator "
          f"({generator.count_params():,} parameters)")
    print(f"wrote {args.out} and {config_path}; use them with --weights {args.out} --config {config_path}")
    return 0
