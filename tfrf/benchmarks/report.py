"""The end of a benchmark's command line: print its table, write its figures, fail in one line."""
from __future__ import annotations

import json
import sys
from typing import Callable, Dict, Optional


def print_and_write(name: str, compute: Callable[[], Dict], format_result: Callable[[Dict], str],
                    out: Optional[str] = None) -> int:
    """Run `compute()`, print `format_result` of it and, with `out`, write it as JSON (atomically).
    A ValueError or OSError (input it cannot use, an unwritable `out`) is one line on stderr,
    `NAME: message`, and exit status 2; nothing is written. Returns the exit status."""
    from tfrf.io import atomic_write_text

    try:
        result = compute()
        print(format_result(result))
        if out:
            atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    except (ValueError, OSError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    return 0
