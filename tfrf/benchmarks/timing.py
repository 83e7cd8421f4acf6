"""Wall-clock timers of every benchmark: repeated runs after warm-up, and interleaved turns.

The minimum of repeated runs (`best_seconds`) is robust to other load on a shared machine; the
median (`median_seconds`) is what a loaded device typically gives. `interleaved_seconds` times
several functions in turns, round after round, so that a changing load hits them alike.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, Hashable, List, Mapping, Optional


def run_seconds(function: Callable[[], object], repeats: int, warmup: int = 1,
                budget_seconds: Optional[float] = None) -> List[float]:
    """Wall times of up to `repeats` calls of `function` after `warmup` untimed ones; with
    `budget_seconds`, no new call starts once that much time is spent (after two timed calls)."""
    for _ in range(warmup):
        function()
    times: List[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (budget_seconds is None or len(times) < 2
                                    or time.perf_counter() - started < budget_seconds):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return times


def best_seconds(function: Callable[[], object], repeats: int, budget_seconds: Optional[float] = 20.0) -> float:
    """Best (minimum) wall time of `function` over up to `repeats` runs after one warm-up,
    stopping early when `budget_seconds` are spent. The minimum, not the median: on a machine
    shared with other work the median measures the neighbours as much as the model."""
    return min(run_seconds(function, repeats, budget_seconds=budget_seconds))


def median_seconds(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls of `function` after `warmup` untimed ones."""
    return statistics.median(run_seconds(function, repeats, warmup))


def interleaved_seconds(runners: Mapping[Hashable, Callable[[], object]], rounds: int, calls_per_turn: int = 1,
                        warmup: int = 1, after_round: Optional[Callable[[], object]] = None
                        ) -> Dict[Hashable, List[float]]:
    """Wall time of every call of each runner over `rounds` rounds, each round giving every runner
    a turn of `calls_per_turn` consecutive calls (after `warmup` untimed calls each), then calling
    `after_round` (untimed): load changes hit every runner alike. With one call per turn each call
    follows the other runners' calls (caches hold their data); with several, the later calls of a
    turn run on warm caches, as a video loop that renders frame after frame with one model does."""
    for runner in runners.values():
        for _ in range(warmup):
            runner()
    times: Dict[Hashable, List[float]] = {label: [] for label in runners}
    for _ in range(rounds):
        for label, runner in runners.items():
            for _ in range(calls_per_turn):
                began = time.perf_counter()
                runner()
                times[label].append(time.perf_counter() - began)
        if after_round is not None:
            after_round()
    return times
