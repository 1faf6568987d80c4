"""The benchmark report's verdicts, which the pool's settings are taken from:
the inline crossover and the Triton table's ratios, on rows made up here."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20


def inline_rows(protocol, medians):
    """medians: {size: (inline, input in shm, output in shm, both in shm)} in ms."""
    names = ("in inline, out inline", "in shm, out inline", "in inline, out shm", "in shm, out shm")
    return [
        {"case": f"inline_{protocol}", "size": size, "contender": name, "median": ms / 1e3}
        for size, values in medians.items()
        for name, ms in zip(names, values)
    ]


def test_the_crossover_is_the_size_from_which_shm_wins_at_every_larger_size():
    rows = inline_rows(
        "grpc",
        {
            4 * KiB: (3.0, 2.9, 3.1, 3.2),  # a win below the crossover is noise: it does not count
            16 * KiB: (3.0, 3.1, 3.1, 3.2),
            64 * KiB: (3.5, 3.4, 3.6, 3.3),
            1 * MiB: (9.0, 6.0, 9.5, 5.0),
        },
    )
    text = report.inline_crossover(rows)
    assert "crossover, GRPC input (output inline): shm wins from 64 KiB on; inline below" in text, text
    assert "crossover, GRPC input (output in shm): shm wins from 64 KiB on; inline below" in text, text
    assert "crossover, GRPC output (input inline): inline wins up to 1 MiB, the largest measured" in text, text
    assert "crossover, GRPC output (input in shm): shm wins from 64 KiB on; inline below" in text, text
    assert "crossover, GRPC both: shm wins from 64 KiB on; inline below" in text, text
    assert "HTTP" not in text  # only what was measured


def triton_rows(kind, size, medians):
    return [
        {
            "case": f"triton_{kind}",
            "kind": kind,
            "size": size,
            "contender": name,
            "median": ms / 1e3,
            "server_median": 0,
        }
        for name, ms in medians.items()
    ]


def test_the_triton_table_compares_the_pool_with_the_best_other_and_plain_from_16_mib():
    others = {"http binary (a)": 100.0, "grpc (b)": 80.0, "shm per request (c)": 50.0, "shm reused by hand (d)": 20.0}
    rows = triton_rows("variable", 16 * MiB, {**others, "tritonshm": 21.0, "tritonshm grpc": 40.0})
    rows += triton_rows("fixed", 1 * MiB, {**others, "tritonshm": 19.0})
    lines = report.triton_table(rows).splitlines()
    variable = next(line for line in lines if line.startswith("variable"))
    fixed = next(line for line in lines if line.startswith("fixed"))
    assert "1.05, 2.00!" in variable and "x3.8!, x2.0!" in variable, variable  # 80/21 = 3.8 < 4
    assert "0.95" in fixed and " x" not in fixed.split("0.95")[1], fixed  # no plain ratio below 16 MiB


def accelerate_rows(protocol, size, plain, accelerated, pool, case="accelerate"):
    return [
        {"case": f"{case}_{protocol}", "protocol": protocol, "size": size, "contender": name, "median": ms / 1e3}
        | {"server_median": 1e-3}
        for name, ms in (("plain", plain), ("accelerated", accelerated), ("pool.infer", pool))
    ]


def test_the_accelerate_table_marks_each_missed_target():
    rows = accelerate_rows("http", 4 * KiB, 2.0, 2.2, 2.1)  # 1.10 over plain: missed
    rows += accelerate_rows("grpc", 4 * KiB, 2.0, 2.08, 2.1)  # 1.04: met
    rows += accelerate_rows("http", 16 * MiB, 100.0, 41.0, 40.0)  # x2.44 < 2.5: missed; 1.03 of the pool: met
    rows += accelerate_rows("http", 64 * MiB, 500.0, 160.0, 140.0)  # x3.1: met; 1.14 of the pool: missed
    rows += accelerate_rows("http", 16 * MiB, 100.0, 90.0, 40.0, case="accelerate_new_shapes")  # no targets here
    lines = report.accelerate_table(rows).splitlines()

    def line(protocol, size, after=0):
        return [x for x in lines if x.startswith(f"{protocol:<9}{size:>8}")][after]

    assert line("http", "4 KiB").split()[-3:] == ["1.10!", "0.91", "1.05"]
    assert line("grpc", "4 KiB").split()[-3:] == ["1.04", "0.96", "0.99"]
    assert line("http", "16 MiB").split()[-3:] == ["0.41", "2.44!", "1.02"]
    assert line("http", "64 MiB").split()[-3:] == ["0.32", "3.12", "1.14!"]
    assert "!" not in line("http", "16 MiB", 1), "the new-shapes table has no targets"
