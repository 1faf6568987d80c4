"""python -m benchmarks, from a source checkout: tritonshm against tritonclient and the machine's limit."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20, 512 << 20]
DEFAULT_CASES = [
    "set",
    "first_touch",
    "get",
    "create",
    "bytes",
    "bf16",
    "round_trip",
    "triton",
    "inline",
    "concurrency",
    "accelerate",
]
ALL_CASES = DEFAULT_CASES + ["soak"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench-results", help="folder for results.json and throughput.png")
    p.add_argument("--repeat", type=int, default=7, help="interleaved repetitions per measurement (default 7)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, 2 repetitions: checks the suite works, measures nothing"
    )
    p.add_argument(
        "--only",
        nargs="*",
        choices=ALL_CASES,
        metavar="CASE",
        help=f"cases to run: {' '.join(ALL_CASES)} (default: all but soak)",
    )
    p.add_argument("--minutes", type=float, default=None, help="how long the soak runs (default 2; with --smoke 1)")


class _Server:
    """One Triton server (tests/triton_server.py) for every Triton case of a
    run, started when the first one needs it."""

    def __init__(self, stack: contextlib.ExitStack, fixed_elements: List[int]) -> None:
        self.stack, self.fixed_elements, self.urls_ = stack, fixed_elements, None

    def urls(self) -> Dict[str, str]:
        if self.urls_ is None:
            from .fixture import server_module

            args = ["--open-statistics"]
            if self.fixed_elements:
                args += ["--fixed-shape-models", *map(str, self.fixed_elements)]
            print("starting the Triton server (PyTriton) ...", file=sys.stderr, flush=True)
            self.urls_ = self.stack.enter_context(server_module().spawn(*args))
        return self.urls_


def _accelerate() -> Any:
    from . import accelerate_cases

    return accelerate_cases


def _concurrency() -> Any:
    from . import concurrency

    return concurrency


def run(args: argparse.Namespace) -> int:
    from . import cases, report, triton_cases

    if cases.ref is None:
        print("the benchmarks compare against tritonclient: pip install 'tritonclient[http]'", file=sys.stderr)
        return 1
    smoke = args.smoke
    repeat = 2 if smoke else args.repeat
    sizes = [4 << 10, 64 << 10] if smoke else SIZES
    wanted = set(args.only or DEFAULT_CASES)
    triton_sizes = [4 << 10] if smoke else triton_cases.TABLE_SIZES
    rows: List[Any] = []
    started = time.time()
    failed = False
    with contextlib.ExitStack() as stack:
        server = _Server(stack, [size // 4 for size in triton_sizes] if "triton" in wanted else [])
        steps: List[tuple] = [
            ("set", lambda: cases.bench_set(sizes, repeat)),
            (
                "first_touch",
                lambda: cases.bench_set_first_touch(
                    sizes[:2] if smoke else [1 << 20, 16 << 20, 256 << 20, 1 << 30], repeat
                ),
            ),
            ("get", lambda: cases.bench_get([4 << 10, 1 << 20] if smoke else [4 << 10, 1 << 20, 1 << 30], repeat)),
            ("create", lambda: cases.bench_create_destroy(repeat)),
            ("bytes", lambda: cases.bench_bytes([(100, 16)] if smoke else [(100_000, 16), (1000, 1 << 20)], repeat)),
            ("bf16", lambda: cases.bench_bf16(1000 if smoke else 1_000_000, repeat)),
            ("round_trip", lambda: cases.bench_round_trip(repeat, 5 if smoke else 50)),
            ("triton", lambda: triton_cases.bench_triton(server.urls(), triton_sizes, 2 if smoke else 5)),
            (
                "inline",
                lambda: triton_cases.bench_inline(
                    server.urls(), [4 << 10, 64 << 10] if smoke else triton_cases.INLINE_SIZES, 2 if smoke else 9
                ),
            ),
            (
                "accelerate",
                lambda: _accelerate().bench_accelerate(
                    server.urls(), [4 << 10] if smoke else _accelerate().SIZES, repeat, not smoke
                ),
            ),
            (
                "concurrency",
                lambda: _concurrency().bench_concurrency(
                    server.urls(),
                    [64 << 10] if smoke else _concurrency().SIZES,
                    0.5 if smoke else 2.0,
                    1 if smoke else 3,
                ),
            ),
        ]
        step: Callable[[], List[Any]]
        for name, step in steps:
            if name in wanted:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                rows += step()
    if "soak" in wanted:
        print("running soak ...", file=sys.stderr, flush=True)
        minutes = args.minutes if args.minutes is not None else (1.0 if smoke else 2.0)
        from . import soak

        outcome = soak.run_soak(minutes)
        rows.append(outcome)
        failed = outcome["failures"] > 0 or bool(outcome["leftovers"])
    os.makedirs(args.out, exist_ok=True)
    measured = [r for r in rows if "median" in r]
    if measured:
        print(report.table(measured))
    for text in (
        report.triton_table(rows),
        report.inline_crossover(rows),
        report.concurrency_table(rows),
        report.accelerate_table(rows),
    ):
        if text:
            print("\n" + text)
    print(f"\n{len(rows)} results in {time.time() - started:.0f} s; machine: {report.machine()}")
    report.write_json(os.path.join(args.out, "results.json"), rows)
    if report.chart_triton(os.path.join(args.out, "triton_latency.png"), rows):
        print(f"wrote {args.out}/triton_latency.png")
    if report.chart(os.path.join(args.out, "throughput.png"), rows):
        print(f"wrote {args.out}/results.json and {args.out}/throughput.png")
    else:
        print(f"wrote {args.out}/results.json (no chart: pip install matplotlib)")
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
