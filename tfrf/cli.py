"""The `tfrf` command line.

Each sub-command lives in its own module under `tfrf.commands`; a module there exposes
`register(subparsers)`, which adds its parser and sets `func` to the function that runs it.
Heavy imports (TensorFlow) happen inside those functions so that `tfrf --help` is fast.

TensorFlow's start-up log (C++ logging, written before any Python code could filter it) is off
unless `--verbose` (TF_CPP_MIN_LOG_LEVEL=3, set before TensorFlow is imported; a user's own
TF_CPP_MIN_LOG_LEVEL wins), and so are the TFLite converter's statistics (`tfrf.io.held_stderr`).
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
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tfrf.commands.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    for command in subparsers.choices.values():  # `tfrf COMMAND ... --debug --verbose` works too
        _add_common(command)
    return parser


VERBOSE_HELP = "show TensorFlow's start-up log and the TFLite converter's statistics"


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    for action in parser._actions:  # nested sub-commands (tfrf export saved-model ...)
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_common(nested)


# A user's mistake (missing file, bad image, wrong shape, unknown preset, mismatched weights) is
# raised as one of these by the library; the command line shows one line and exits with status 2.
USER_ERRORS = (ValueError, OSError, KeyError)
USER_ERROR_STATUS = 2


def _user_error_types():
    from tfrf.dependencies import MissingDependency  # an optional package: the message names the pip line
    from tfrf.pose.keypoints import NoPersonFoundError  # "no person found in photo.jpg" (no TF import)

    return (*USER_ERRORS, MissingDependency, NoPersonFoundError)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) if lines else type(error).__name__


def main(argv: Optional[List[str]] = None) -> int:
    from tfrf import io as tfrf_io

    # TensorFlow's C++ log level is read once, when it is first imported: set it before anything
    # (even building the parser) could import it. Level 3 hides the cuDNN/cuFFT/cuBLAS
    # "Unable to register factory" lines, which are logged as errors; a user's own
    # TF_CPP_MIN_LOG_LEVEL wins. tensorflow_addons' end-of-life notice is always hidden.
    if "--verbose" not in (sys.argv[1:] if argv is None else argv):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message=r"\s*TensorFlow Addons \(TFA\) has ended development")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = bool(getattr(args, "verbose", False))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    was_verbose = tfrf_io.is_verbose()
    tfrf_io.set_verbose(args.verbose)
    try:
        result = args.func(args)
    except _user_error_types() as error:
        if args.debug:
            raise
        print(f"tfrf {args.command}: {_one_line(error)}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"tfrf {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        tfrf_io.set_verbose(was_verbose)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
