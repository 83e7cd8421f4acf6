"""What several commands' parsers share (no `register`: not a command itself)."""
from __future__ import annotations

import argparse


def documented_parser(subparsers, name: str, help: str, doc: str) -> argparse.ArgumentParser:
    """A sub-command parser whose description is the first paragraph of `doc` (the command
    module's docstring) and whose epilog, shown as written, is the rest."""
    return subparsers.add_parser(name, help=help, description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=doc.split("\n\n", 1)[1])


def add_budget_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """The options of a training run's budget and data that `tfrf train` and `tfrf demo` share;
    `default` says where an option's default comes from."""
    parser.add_argument("--batch-size", type=int, help=f"training batch, global (default {default})")
    parser.add_argument("--flow-steps", type=int, help=f"stage-1 steps (default {default})")
    parser.add_argument("--full-steps", type=int, help=f"stage-2 steps (default {default})")
    parser.add_argument("--seed", type=int, help="seed of data, weights and tuples")
    parser.add_argument("--train-objects", type=int, help="synthetic training objects (54 views each)")
    parser.add_argument("--test-objects", type=int, help="synthetic held-out objects")
    parser.add_argument("--cache-dir", help="where the synthetic data is cached (default ~/.cache/tfrf/synthetic)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
