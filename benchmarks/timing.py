"""Timing helpers: medians over repeats, runs interleaved so that machine noise
falls on every contender alike and shows in the spread."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable, Dict, List


def time_per_call(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of fn, over `number` calls."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if gc_was_enabled:
            gc.enable()


def interleaved(contenders: Dict[str, Callable[[], float]], repeat: int) -> Dict[str, List[float]]:
    """Runs each contender's measurement `repeat` times, rotating the order
    every round. Each callable returns one sample (seconds)."""
    samples: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(contenders[name]())
    return samples


def summary(values: List[float]) -> Dict[str, float]:
    ordered = sorted(values)
    q = (
        statistics.quantiles(ordered, n=4)
        if len(ordered) >= 4
        else [ordered[0], statistics.median(ordered), ordered[-1]]
    )
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q[0],
        "q3": q[-1],
        "n": len(ordered),
    }


def calls_for(seconds_per_call_guess: float, budget: float = 0.02, cap: int = 20000) -> int:
    return max(1, min(cap, int(budget / max(seconds_per_call_guess, 1e-9))))
