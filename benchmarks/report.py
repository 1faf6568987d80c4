"""The results as a table (medians and ratios), JSON and a PNG chart."""

from __future__ import annotations

import json
import os
import platform
from typing import Any, Dict, List, Optional


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


def human_time(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.2f} us"
    return f"{s * 1e9:.0f} ns"


def machine() -> Dict[str, Any]:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    import numpy

    info["numpy"] = numpy.__version__
    try:
        import tritonclient

        info["tritonclient"] = getattr(tritonclient, "__version__", None) or _dist_version("tritonclient")
    except ImportError:
        pass
    return info


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def best_limit(by: Dict[str, Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The fastest of the limit probe's kernels in one group, if it ran."""
    limits = [r for name, r in by.items() if name.startswith("limit:")]
    return min(limits, key=lambda r: r["median"]) if limits else None


def table(rows: List[Dict[str, Any]]) -> str:
    """One line per case and size: each contender's median (and GB/s for
    copies), then tritonshm's ratio to each other contender (>1: we are faster);
    where the limit probe ran, tritonshm's share of the machine's best copy."""
    out = []
    groups: Dict[tuple, Dict[str, Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["size"], r.get("label", "")), {})[r["contender"]] = r
    header = f"{'case':<18} {'size':>10}  {'contender':<34} {'median':>10} {'spread (q1-q3)':>22} {'GB/s':>7}  speedup of tritonshm"
    out.append(header)
    out.append("-" * len(header))
    for (case, size, label), by in groups.items():
        ours = by.get("tritonshm")
        best = best_limit(by)
        for name, r in by.items():
            gbps = f"{size / r['median'] / 1e9:.2f}" if case.startswith(("set", "create_first")) else ""
            ratio = ""
            if ours and name != "tritonshm":
                ratio = f"x{r['median'] / ours['median']:.2f}"
            extra = f"  (create {human_time(r['create_median'])})" if "create_median" in r else ""
            if "per_page_median" in r:
                extra += f"  ({human_time(r['per_page_median'])} per page)"
            if name == "tritonshm" and best:
                extra += f"  {best['median'] / r['median']:.2f} of the machine's best ({best['contender']})"
            if "server_median" in r:
                extra += f"  (server {human_time(r['server_median'])}"
                extra += f", pool's own work {human_time(r['pool_work_median'])})" if "pool_work_median" in r else ")"
            out.append(
                f"{case:<18} {label or human_size(size):>10}  {name:<34} {human_time(r['median']):>10} "
                f"{human_time(r['q1']) + '-' + human_time(r['q3']):>22} {gbps:>7}  {ratio}{extra}"
            )
    return "\n".join(out)


def write_json(path: str, rows: List[Dict[str, Any]]) -> None:
    with open(path, "w") as f:
        json.dump({"machine": machine(), "results": rows}, f, indent=1)


COLORS = {
    "tritonshm": "tab:blue",
    "tritonshm reserve=False": "tab:cyan",
    "tritonshm prefault": "tab:purple",
    "tritonclient": "tab:orange",
    "machine's best copy (limit probe)": "tab:green",
    "kernel: populate pages only": "tab:gray",
    "kernel: fallocate + populate": "tab:brown",
}


def _pyplot() -> Any:
    """matplotlib's pyplot without a display, or None when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


TRITON_COLORS = {
    "tritonshm": "tab:blue",
    "tritonshm grpc": "tab:cyan",
    "http binary (a)": "tab:orange",
    "grpc (b)": "tab:red",
    "shm per request (c)": "tab:green",
    "shm reused by hand (d)": "tab:purple",
}


def _plot_lines(ax: Any, by: Dict[str, List[tuple]], colors: Dict[str, str]) -> None:
    """One line per contender over sizes (log2 axis): tritonshm thick, the
    machine's and the kernel's limits dashed."""
    for name, points in by.items():
        points.sort()
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            label=name,
            color=colors.get(name),
            linestyle="--" if name.startswith(("machine", "kernel")) else "-",
            linewidth=2.5 if name == "tritonshm" else 1.2,
        )
    ax.set_xscale("log", base=2)


TRITON_COLUMNS = {  # contender: column heading
    "http binary (a)": "plain HTTP",
    "grpc (b)": "plain gRPC",
    "shm per request (c)": "shm/request",
    "shm reused by hand (d)": "shm reused",
    "tritonshm": "pool HTTP",
    "tritonshm grpc": "pool gRPC",
}
TRITON_POOLS = ("tritonshm", "tritonshm grpc")
TRITON_OTHERS = ("http binary (a)", "grpc (b)", "shm per request (c)", "shm reused by hand (d)")


def triton_table(rows: List[Dict[str, Any]]) -> str:
    """The issue's table: per model kind and size, each contender's median, the
    pool's ratio to the best of the four others (target <= 1.05), from 16 MiB
    the faster plain protocol's time over the pool's (target >= 4), and where
    the pool's time goes."""
    groups: Dict[tuple, Dict[str, Dict[str, Any]]] = {}
    for r in rows:
        if r.get("case", "").startswith("triton_") and "median" in r:
            groups.setdefault((r["kind"], r["size"]), {})[r["contender"]] = r
    if not groups:
        return ""
    head = f"{'model':<9}{'size':>8} " + "".join(f"{h:>12}" for h in TRITON_COLUMNS.values())
    head += "   pool/best (HTTP, gRPC)   plain/pool from 16 MiB"
    out = ["Triton: median latency per request; the pool as a user calls it (no output_sizes)", head, "-" * len(head)]
    notes = []
    for (kind, size), by in groups.items():
        line = f"{kind:<9}{human_size(size):>8} "
        line += "".join(f"{human_time(by[c]['median']) if c in by else '-':>12}" for c in TRITON_COLUMNS)
        others = [by[c]["median"] for c in TRITON_OTHERS if c in by]
        plain = [by[c]["median"] for c in ("http binary (a)", "grpc (b)") if c in by]
        ratios, speedups = [], []
        for pool in TRITON_POOLS:
            if pool in by and others:
                ratio = by[pool]["median"] / min(others)
                ratios.append(f"{ratio:.2f}{'' if ratio <= 1.05 else '!'}")
            if pool in by and plain and size >= 16 << 20:
                speedup = min(plain) / by[pool]["median"]
                speedups.append(f"x{speedup:.1f}{'' if speedup >= 4 else '!'}")
        line += f"   {', '.join(ratios):<24} {', '.join(speedups)}"
        out.append(line)
        for pool in TRITON_POOLS:
            r = by.get(pool)
            if r is None:
                continue
            where = f"server {human_time(r['server_median'])}"
            if "pool_work_median" in r:
                where += f", pool's own work {human_time(r['pool_work_median'])}"
            if "outputs_in_shm_per_request" in r:
                where += f", per request: inputs in shm {r.get('inputs_in_shm_per_request', 0):.2f}"
                where += f", outputs in shm {r['outputs_in_shm_per_request']:.2f}, reruns {r.get('retries_per_request', 0):.2f}"
            elif r.get("pool_stats") is None:
                where += ", no pool.stats() (older pool)"
            notes.append(f"  {kind:<9}{human_size(size):>8} {TRITON_COLUMNS[pool]}: {where}")
    out.append("('!': target missed: pool/best <= 1.05, plain/pool >= 4 from 16 MiB)")
    out.append("where the pool's time goes (medians per request):")
    return "\n".join(out + notes)


ACCELERATE_TARGETS = "4 KiB: accelerated/plain <= 1.05; plain/accelerated >= 2.5 at 16 MiB, >= 3 at 64 MiB; accelerated/pool.infer <= 1.10 from 1 MiB"


def accelerate_table(rows: List[Dict[str, Any]]) -> str:
    """accelerate(): the examples' way of writing a request, plain and
    accelerated, and pool.infer; the ratios the issue's targets are about, and
    where the accelerated request's time goes."""
    out: List[str] = []
    for case, title in (
        ("accelerate", "one shape"),
        ("accelerate_new_shapes", "a new shape every request (outputs' sizes predicted from earlier shapes)"),
    ):
        groups: Dict[tuple, Dict[str, Dict[str, Any]]] = {}
        for r in rows:
            if r.get("case", "").startswith(case + "_") and r["case"][len(case) + 1 :] in ("http", "grpc"):
                groups.setdefault((r["protocol"], r["size"]), {})[r["contender"]] = r
        if not groups:
            continue
        head = f"{'protocol':<9}{'size':>8}{'plain':>12}{'accelerated':>13}{'pool.infer':>12}"
        head += f"{'accel/plain':>13}{'plain/accel':>13}{'accel/pool':>12}"
        out += [f"accelerate(), {title}: median per request, model `scale`", head, "-" * len(head)]
        notes = []
        for (protocol, size), by in sorted(groups.items()):
            if not all(c in by for c in ("plain", "accelerated", "pool.infer")):
                continue
            plain, accelerated, pool = (by[c]["median"] for c in ("plain", "accelerated", "pool.infer"))
            line = f"{protocol:<9}{human_size(size):>8}{human_time(plain):>12}{human_time(accelerated):>13}"
            line += f"{human_time(pool):>12}"
            over = accelerated / plain
            speedup = plain / accelerated
            to_pool = accelerated / pool
            missed_over = case == "accelerate" and size <= 4 << 10 and over > 1.05
            wanted = 3 if size >= 64 << 20 else 2.5 if size >= 16 << 20 else None
            missed_speedup = case == "accelerate" and wanted is not None and speedup < wanted
            missed_pool = case == "accelerate" and size >= 1 << 20 and to_pool > 1.10
            line += f"{over:>12.2f}{'!' if missed_over else ' '}{speedup:>12.2f}{'!' if missed_speedup else ' '}"
            line += f"{to_pool:>11.2f}{'!' if missed_pool else ' '}"
            out.append(line)
            r = by["accelerated"]
            where = f"server {human_time(r['server_median'])} (plain {human_time(by['plain']['server_median'])})"
            if all("client_median" in by[c] for c in ("plain", "accelerated", "pool.infer")):
                where += ", the rest (client, loopback): " + ", ".join(
                    f"{c} {human_time(by[c]['client_median'])}" for c in ("plain", "accelerated", "pool.infer")
                )
            if "set_data_median" in r:
                where += f", set_data_from_numpy {human_time(r['set_data_median'])}"
            counts = [
                f"{label} {r[key + '_per_request']:.2f}"
                for key, label in (
                    ("inputs_staged", "staged"),
                    ("inputs_in_shm", "inputs in shm"),
                    ("outputs_in_shm", "outputs in shm"),
                    ("outputs_inline", "outputs inline"),
                    ("outputs_predicted", "predicted"),
                    ("retries", "reruns"),
                )
                if key + "_per_request" in r
            ]
            if counts:
                where += "; per request: " + ", ".join(counts)
            notes.append(f"  {protocol:<9}{human_size(size):>8}: {where}")
        if case == "accelerate":
            out.append(f"('!': target missed: {ACCELERATE_TARGETS})")
        out.append("where the accelerated request's time goes (medians):")
        out += notes + [""]
    return "\n".join(out).rstrip()


def inline_crossover(rows: List[Dict[str, Any]]) -> str:
    """Per protocol and direction, the smallest size from which a registered
    region beats sending the tensor in the request (at that size and every
    larger one measured): the pool's inline threshold, measured."""
    columns = ("in inline, out inline", "in shm, out inline", "in inline, out shm", "in shm, out shm")
    # What moves to shm: (the variant with it in shm, the same with it inline). The
    # other tensor held inline or in shm: both matter, as the pool decides per tensor.
    directions = {
        "input (output inline)": (columns[1], columns[0]),
        "input (output in shm)": (columns[3], columns[2]),
        "output (input inline)": (columns[2], columns[0]),
        "output (input in shm)": (columns[3], columns[1]),
        "both": (columns[3], columns[0]),
    }
    out = []
    for protocol in ("http", "grpc"):
        by: Dict[int, Dict[str, float]] = {}
        for r in rows:
            if r.get("case") == f"inline_{protocol}":
                by.setdefault(r["size"], {})[r["contender"]] = r["median"]
        if not by:
            continue
        sizes = sorted(by)
        out.append(f"One tensor inline or through a registered region, {protocol.upper()}, median per request:")
        out.append(f"{'size':>10}" + "".join(f"{c:>24}" for c in columns) + "   shm - inline: " + ", ".join(directions))
        for size in sizes:
            t = by[size]
            line = f"{human_size(size):>10}" + "".join(f"{human_time(t[c]) if c in t else '-':>24}" for c in columns)
            deltas = [f"{(t[a] - t[b]) * 1e3:+.2f}" for a, b in directions.values() if a in t and b in t]
            out.append(line + "   " + ", ".join(deltas))
        for direction, (shm_variant, inline_variant) in directions.items():
            crossover = None
            for size in reversed(sizes):
                if by[size].get(shm_variant, float("inf")) < by[size].get(inline_variant, 0.0):
                    crossover = size
                else:
                    break
            if crossover is None:
                verdict = f"inline wins up to {human_size(sizes[-1])}, the largest measured"
            elif crossover == sizes[0]:
                verdict = f"shm wins from {human_size(sizes[0])}, the smallest measured"
            else:
                verdict = f"shm wins from {human_size(crossover)} on; inline below"
            out.append(f"  crossover, {protocol.upper()} {direction}: {verdict}")
    return "\n".join(out)


def concurrency_table(rows: List[Dict[str, Any]]) -> str:
    """Requests per second under concurrency, per mode and size; the pool's ratio to the best other."""
    groups: Dict[tuple, Dict[str, Dict[str, Any]]] = {}
    for r in rows:
        if r.get("case", "").startswith("concurrency_"):
            groups.setdefault((r["case"], r["size"]), {})[r["contender"]] = r
    if not groups:
        return ""
    out = ["Concurrency: requests per second (every result checked)"]
    for (case, size), by in groups.items():
        cells = "  ".join(f"{name} {r['rps']:.1f}/s" for name, r in by.items())
        ours = by.get("tritonshm")
        others = [r["rps"] for name, r in by.items() if name != "tritonshm"]
        verdict = ""
        if ours and others:
            ratio = ours["rps"] / max(others)
            verdict = f"  pool/best other x{ratio:.2f}{'' if ratio >= 1 else '!'}"
        out.append(f"  {case:<24}{human_size(size):>8}  {cells}{verdict}")
    return "\n".join(out)


def chart_triton(path: str, rows: List[Dict[str, Any]]) -> bool:
    """Per-request latency against a real Triton server, by input size (the variable-dims model)."""
    triton_rows = [r for r in rows if r["case"] == "triton_variable"]
    if not triton_rows:
        return False
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    by: Dict[str, List[tuple]] = {}
    for r in triton_rows:
        by.setdefault(r["contender"], []).append((r["size"], r["median"] * 1e3))
    _plot_lines(ax, by, TRITON_COLORS)
    ax.set_yscale("log")
    ax.set_xlabel("input size (bytes; the output is as large)")
    ax.set_ylabel("latency per request (ms, median)")
    ax.set_title("scale (variable dims) through a real Triton server (PyTriton, loopback)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chart(path: str, rows: List[Dict[str, Any]]) -> bool:
    if not any(r["case"] in ("set_warm", "create_first_set") for r in rows):
        return False
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, case, title in (
        (axes[0], "set_warm", "set_shared_memory_region, warm region"),
        (axes[1], "create_first_set", "create + first set (fresh pages)"),
    ):
        by: Dict[str, List[tuple]] = {}
        groups: Dict[int, Dict[str, Dict[str, Any]]] = {}
        for r in rows:
            if r["case"] == case:
                groups.setdefault(r["size"], {})[r["contender"]] = r
        for size, group in groups.items():
            best = best_limit(group)
            if best:  # the limit probe's kernels as one line: the best of them
                by.setdefault("machine's best copy (limit probe)", []).append((size, size / best["median"] / 1e9))
            for name, r in group.items():
                if not name.startswith("limit:"):
                    by.setdefault(name, []).append((size, size / r["median"] / 1e9))
        _plot_lines(ax, by, COLORS)
        ax.set_xlabel("tensor size (bytes)")
        ax.set_ylabel("throughput (GB/s, median)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if by:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
