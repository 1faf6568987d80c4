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


def chart_triton(path: str, rows: List[Dict[str, Any]]) -> bool:
    """Per-request latency against a real Triton server, by input size."""
    triton_rows = [r for r in rows if r["case"] == "triton_infer"]
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
    ax.set_title("Inference through a real Triton server (PyTriton, loopback)")
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
