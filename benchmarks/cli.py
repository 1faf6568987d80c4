"""python -m benchmarks, from a source checkout: tritonshm against tritonclient and the machine's limit."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, List, Optional

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20, 512 << 20]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench-results", help="folder for results.json and throughput.png")
    p.add_argument("--repeat", type=int, default=7, help="interleaved repetitions per measurement (default 7)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, 2 repetitions: checks the suite works, measures nothing"
    )
    p.add_argument("--only", nargs="*", help="cases to run: set first_touch get create bytes bf16 round_trip triton")


def run(args: argparse.Namespace) -> int:
    from . import cases, report, triton_cases

    if cases.ref is None:
        print("the benchmarks compare against tritonclient: pip install 'tritonclient[http]'", file=sys.stderr)
        return 1
    smoke = args.smoke
    repeat = 2 if smoke else args.repeat
    sizes = [4 << 10, 64 << 10] if smoke else SIZES
    wanted = set(args.only or ["set", "first_touch", "get", "create", "bytes", "bf16", "round_trip", "triton"])
    rows: List[Any] = []
    started = time.time()
    steps = [
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
        (
            "triton",
            lambda: triton_cases.bench_triton(
                [4 << 10] if smoke else [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20], 2 if smoke else 5
            ),
        ),
    ]
    for name, step in steps:
        if name in wanted:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows += step()
    os.makedirs(args.out, exist_ok=True)
    print(report.table(rows))
    print(f"\n{len(rows)} results in {time.time() - started:.0f} s; machine: {report.machine()}")
    report.write_json(os.path.join(args.out, "results.json"), rows)
    if report.chart_triton(os.path.join(args.out, "triton_latency.png"), rows):
        print(f"wrote {args.out}/triton_latency.png")
    if report.chart(os.path.join(args.out, "throughput.png"), rows):
        print(f"wrote {args.out}/results.json and {args.out}/throughput.png")
    else:
        print(f"wrote {args.out}/results.json (no chart: pip install matplotlib)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
