"""The tritonshm command line, driven as a user would: as a subprocess."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tritonshm as shm

from conftest import shm_path


def cli(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "tritonshm.cli", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def installed_command():
    import pathlib
    import shutil

    script = pathlib.Path(sys.executable).parent / "tritonshm"
    script = str(script) if script.exists() else shutil.which("tritonshm")
    assert script, "the tritonshm console script is installed with the package"
    return script


def test_command_never_imports_from_the_working_directory(tmp_path):
    """`sudo tritonshm gc` run in a directory another user can write must not
    run their code: not ./benchmarks/cli.py, not a
    module named like one the command or its demo server imports."""
    marker = tmp_path / "RAN"
    planted = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (tmp_path / "benchmarks").mkdir()
    for name in (
        "benchmarks/__init__.py",
        "benchmarks/cli.py",
        "numpy.py",
        "json.py",
        "argparse.py",
        "tritonshm.py",
        "_posixshmem.py",
        "mmap.py",
    ):
        (tmp_path / name).write_text(planted)
    env = (
        {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if "PYTHONPATH" not in os.environ
        else dict(os.environ)
    )
    for args in (["ls"], ["gc", "--dry-run"], ["demo"], ["--help"]):
        result = subprocess.run(
            [installed_command(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode == 0, (args, result.stderr)
        assert not marker.exists(), f"tritonshm {' '.join(args)} ran {marker.read_text()!r} from the working directory"


def test_help_for_every_subcommand_ends_with_an_example():
    for sub in ("ls", "info", "create", "rm", "gc", "status", "demo"):
        out = cli(sub, "--help").stdout
        assert "usage: tritonshm " + sub in out
        assert "examples:\n  tritonshm " + sub in out, out


def test_python_dash_m_tritonshm_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "tritonshm", "ls", "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "regions" in json.loads(result.stdout)


def test_create_ls_info_rm_round_trip(make_key):
    key = make_key("cli")
    out = cli("create", key, "64K", "--mode", "0640").stdout
    assert "created " + key in out
    assert shm_path(key).stat().st_size == 65536
    assert oct(shm_path(key).stat().st_mode & 0o777) == "0o640"

    listing = json.loads(cli("ls", "--json").stdout)
    row = next(r for r in listing["regions"] if r["key"] == key)
    assert row["size"] == 65536 and row["mode"] == "0640" and row["in_use"] is False
    assert key in cli("ls").stdout

    handle = shm.create_shared_memory_region("n", key, 65536)
    try:
        shm.set_shared_memory_region(handle, [np.array([1.5, -2.0], np.float32)], offset=8)
        info = json.loads(cli("info", key, "--dtype", "FP32", "--shape", "2", "--offset", "8", "--json").stdout)
        assert info["values"] == [1.5, -2.0]
        assert os.getpid() in info["mapped_by"], "our mapping is seen in /proc"
        text = cli("info", key, "--length", "16", "--offset", "8").stdout
        assert "00000008  00 00 c0 3f 00 00 00 c0" in text
        refused = cli("rm", key, check=False)
        assert refused.returncode == 1 and "in use by" in refused.stderr
        assert shm_path(key).exists()
    finally:
        shm.destroy_shared_memory_region(handle)  # attached: does not unlink
    assert "removed " + key in cli("rm", key).stdout
    assert not shm_path(key).exists()


def test_info_decodes_bytes_tensor(make_key):
    key = make_key("cli")
    handle = shm.create_shared_memory_region("n", key, 256)
    try:
        shm.set_shared_memory_region(handle, [shm.serialize_byte_tensor(np.array([b"ab", b"xyz"], dtype=object))])
        info = json.loads(cli("info", key, "--dtype", "BYTES", "--shape", "2", "--json").stdout)
        assert info["values"] == ["ab", "xyz"]
    finally:
        shm.destroy_shared_memory_region(handle)


def test_info_length_bounds_what_is_decoded_and_an_offset_past_the_end_fails(make_key):
    key = make_key("cli")
    handle = shm.create_shared_memory_region("n", key, 64)
    try:
        shm.set_shared_memory_region(handle, [np.arange(16, dtype=np.float32)])
        info = json.loads(cli("info", key, "--dtype", "FP32", "--length", "10", "--offset", "4", "--json").stdout)
        assert info["values"] == [1.0, 2.0] and info["decoded"]["shape"] == [2]
        assert json.loads(cli("info", key, "--dtype", "FP32", "--json").stdout)["values"] == list(range(16))
        alone = cli("info", key, "--shape", "2", check=False)
        assert alone.returncode == 2 and "--shape needs --dtype" in alone.stderr and alone.stdout == ""
        both = cli("info", key, "--dtype", "FP32", "--shape", "2", "--length", "8", check=False)
        assert both.returncode == 2 and "--shape and --length both say how much to show" in both.stderr
        past = cli("info", key, "--offset", "100", check=False)
        assert past.returncode == 1 and past.stdout == ""
        assert f"offset 100 is past the end of '{key}', which holds 64 bytes" in past.stderr
        assert "first 0 bytes from offset 64:" in cli("info", key, "--offset", "64").stdout
    finally:
        shm.destroy_shared_memory_region(handle)


def test_errors_have_messages_and_exit_codes(make_key):
    missing = make_key("missing")
    result = cli("info", missing, check=False)
    assert result.returncode == 1 and f"no shared memory region '{missing}'" in result.stderr
    result = cli("rm", missing, check=False)
    assert result.returncode == 1 and "no shared memory region" in result.stderr
    for command in (["create", "a/b", "10"], ["info", "../../etc/passwd"], ["rm", make_key("fine"), "a/b"]):
        result = cli(*command, check=False)  # an invalid key is wrong usage: nothing is done
        assert result.returncode == 2 and "invalid shared memory key" in result.stderr, command
    result = cli("create", make_key("x"), "ten", check=False)
    assert result.returncode == 2 and "invalid size" in result.stderr
    key = make_key("dup")
    cli("create", key, "1K")
    result = cli("create", key, "1K", check=False)
    assert result.returncode == 1 and "File exists" in result.stderr
    cli("rm", key)


def test_gc_removes_only_regions_no_live_process_uses(make_key):
    prefix = make_key("gc")  # a unique prefix: the test touches nothing else in /dev/shm
    orphan, held = prefix + "_orphan", prefix + "_held"
    # A writer that crashes (SIGKILL) after creating, leaving its region behind.
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import os, signal, tritonshm as shm
            h = shm.create_shared_memory_region("x", "{orphan}", 4096)
            os.kill(os.getpid(), signal.SIGKILL)
        """),
        ],
        timeout=60,
    )
    assert crashed.returncode == -9 and shm_path(orphan).exists()
    handle = shm.create_shared_memory_region("n", held, 4096)
    try:
        dry = json.loads(cli("gc", "--dry-run", "--prefix", prefix, "--trust-uninspected", "--json").stdout)
        assert [r["key"] for r in dry["removed"]] == [orphan]
        assert [r["key"] for r in dry["kept"]] == [held]
        assert shm_path(orphan).exists(), "a dry run removes nothing"
        young = cli("gc", "--prefix", prefix, "--trust-uninspected", "--min-age", "3600").stdout
        assert f"kept {orphan} (younger than the minimum age)" in young and shm_path(orphan).exists()
        out = cli("gc", "--prefix", prefix, "--trust-uninspected").stdout
        assert f"removed {orphan}" in out and f"kept {held}" in out
        assert not shm_path(orphan).exists()
        assert shm_path(held).exists(), "a region a live process maps is never collected"
    finally:
        shm.destroy_shared_memory_region(handle)


def test_gc_keeps_everything_while_a_process_cannot_be_inspected(make_key):
    from tritonshm.inventory import collect_garbage

    key = make_key("gc")
    cli("create", key, "1K")
    report = collect_garbage(prefix=key)
    if report.uninspected:  # e.g. no CAP_SYS_PTRACE: the unknown process might use it
        assert [k.region.key for k in report.kept] == [key] and shm_path(key).exists()
    else:
        assert [r.key for r in report.removed] == [key] and not shm_path(key).exists()
    shm_path(key).unlink(missing_ok=True)


@pytest.mark.slow
def test_gc_leaves_other_tools_regions_alone_unless_asked():
    """Triton's Python backend and Python's multiprocessing (PyTriton) manage
    their own regions; on a Triton host, `tritonshm gc` must not take them."""
    keys = [
        f"/triton_python_backend_shm_region_tshm_{os.getpid()}",
        f"/psm_tshm_{os.getpid()}",
        f"/pytrtion_tshm_{os.getpid()}",
    ]
    try:
        for key in keys:
            cli("create", key, "4K")
        for key in keys:
            out = cli("gc", "--prefix", key, "--trust-uninspected").stdout
            assert f"kept {key} (another tool's region: --include-foreign removes it)" in out
            assert shm_path(key).exists()
            report = json.loads(cli("gc", "--prefix", key, "--trust-uninspected", "--dry-run", "--json").stdout)
            assert [k["reason"] for k in report["kept"]] == ["another tool's region"]
            assert report["kept"][0]["foreign"] is True
        for key in keys:
            out = cli("gc", "--prefix", key, "--trust-uninspected", "--include-foreign").stdout
            assert f"removed {key}" in out and not shm_path(key).exists()
    finally:
        for key in keys:
            shm_path(key).unlink(missing_ok=True)


SHAPES = [[], [0], [5], [7], [1001], [3000], [2, 3], [10, 200], [7, 7, 7], [3, 0, 4], [1, 1, 2000], [6, 170], [2000, 1]]


def test_info_prints_what_numpy_prints_and_its_json_holds_every_value(make_key, monkeypatch):
    """`info` reads only the elements numpy shows (the first and last three along each long axis, past 1000
    elements) and writes JSON a piece at a time: both must read as if the whole array were at hand."""
    from tritonshm import _contents
    from tritonshm._contents import Tensor

    key = make_key("view")
    n = 1 << 16
    handle = shm.create_shared_memory_region("view", key, n * 8)
    words = [bytes([i % 251]) * (i % 5) for i in range(2500)]
    encoded = np.frombuffer(shm.serialize_byte_tensor(np.array(words, dtype=object)).item(), np.uint8)
    try:
        shm.set_shared_memory_region(handle, [(np.random.default_rng(1).standard_normal(n) * 100)])
        region = shm.get_contents_as_numpy(handle, np.uint8, [n * 8]).copy()
        for dtype, triton in [(np.float64, "FP64"), (np.float32, "FP32"), (np.int16, "INT16"), (np.bool_, "BOOL")]:
            values = np.frombuffer(region.tobytes(), dtype=dtype)
            for shape in SHAPES:
                expected = values[: int(np.prod(shape))].reshape(shape)
                assert Tensor(key, triton, shape, 0, n * 8, key).printed() == str(expected), (triton, shape)
                for piece in (1, 3, 7, 1 << 16):  # pieces within a row, of whole rows, of the whole array
                    monkeypatch.setattr(_contents, "PIECE_ELEMENTS", piece)
                    got = "".join(Tensor(key, triton, shape, 0, n * 8, key).json_values())
                    assert got == json.dumps(expected.tolist()), (triton, shape, piece)
        shm.set_shared_memory_region(handle, [encoded], offset=8)
        for shape in [[1], [6], [7], [2500], [50, 50], [7, 7, 7], [0]]:
            expected = np.array(words[: int(np.prod(shape))], dtype=object).reshape(shape)
            bytes_tensor = Tensor(key, "BYTES", shape, 8, n * 8, key)
            assert bytes_tensor.printed() == str(expected), shape
            assert json.loads("".join(bytes_tensor.json_values())) == [w.decode("latin-1") for w in expected.flat]
    finally:
        shm.destroy_shared_memory_region(handle)


def test_info_names_a_bytes_element_that_runs_past_the_region(make_key):
    key = make_key("bytes")
    handle = shm.create_shared_memory_region("n", key, 64)
    try:
        data = (2).to_bytes(4, "little") + b"ab" + (1000).to_bytes(4, "little")  # "ab", then 1000 bytes
        shm.set_shared_memory_region(handle, [np.frombuffer(data, np.uint8)])
        result = cli("info", key, "--dtype", "BYTES", "--shape", "2", check=False)
        assert (result.returncode, result.stderr) == (
            1,
            f"tritonshm info: unable to inspect shared memory '{key}': malformed BYTES tensor: element 1 at byte 6 "
            "declares 1000 bytes, only 54 remain of 64\n",
        )
        as_json = cli("info", key, "--dtype", "BYTES", "--shape", "2", "--json", check=False)
        assert (as_json.returncode, as_json.stdout) == (1, ""), "never half a JSON document"
        assert "malformed BYTES tensor: element 1 at byte 6" in as_json.stderr
    finally:
        shm.destroy_shared_memory_region(handle)
