"""The `tfrf` command line.

Each sub-command lives in its own module under `tfrf.commands`; a module there exposes
`register(subparsers)`, which adds its parser and sets `func` to the function that runs it.
Heavy imports (TensorFlow) happen inside those functions so that `tfrf --help` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    from tfrf import commands

    parser = argparse.ArgumentParser(
        prog="tfrf",
        description="Multi-source pose-guided image generation (residual flow based correction).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tfrf.commands.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    # Quiet TensorFlow's start-up chatter and tensorflow_addons' end-of-life notice; a user's own
    # TF_CPP_MIN_LOG_LEVEL wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=r"\s*TensorFlow Addons \(TFA\) has ended development")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
