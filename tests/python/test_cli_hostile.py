"""The command line on a hostile /dev/shm and for every user: names that try
to forge output, another user's regions, bad arguments and unreachable
servers. Errors are one line on stderr, never a traceback."""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

import tritonshm as shm

from conftest import AS_NOBODY, new_key, shm_path, skip_unless_nobody_can_run_python

PY = sys.executable


def cli(*args, user=(), check=None):
    result = subprocess.run([*user, PY, "-m", "tritonshm.cli", *args], capture_output=True, text=True, timeout=120)
    if check is not None:
        assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_line_error(result):
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture
def prefix():
    """A unique key prefix; at teardown every file under it is removed."""
    made = new_key("hostile")
    yield made
    for name in os.listdir(b"/dev/shm"):
        if name.startswith(os.fsencode(made[1:])):
            os.unlink(b"/dev/shm/" + name)


def make_file(key_bytes: bytes, size=4096, mode=0o600, owner=None):
    path = b"/dev/shm/" + key_bytes.lstrip(b"/")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
    os.ftruncate(fd, size)
    os.write(fd, b"tritonshm")
    os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, owner, owner)
    os.close(fd)
    return path


def test_gc_by_an_unprivileged_user_skips_others_regions_and_removes_its_own(prefix):
    skip_unless_nobody_can_run_python()
    roots, mine = prefix + "_root", prefix + "_nobody"
    make_file(roots.encode(), mode=0o666)  # writable by all, but /dev/shm is sticky
    make_file(mine.encode(), owner=65534)
    dry = cli("gc", "--dry-run", "--prefix", prefix, "--trust-uninspected", user=AS_NOBODY, check=3)
    assert f"would remove {mine} " in dry.stdout and roots not in dry.stdout, dry.stdout
    assert f"skipped {roots} (owned by root: only its owner or root may remove it)" in dry.stderr
    result = cli("gc", "--prefix", prefix, "--trust-uninspected", user=AS_NOBODY, check=3)
    assert f"removed {mine} " in result.stdout
    assert f"skipped {roots} (owned by root: only its owner or root may remove it)" in result.stderr
    assert not shm_path(mine).exists() and shm_path(roots).exists()
    report = json.loads(cli("gc", "--prefix", prefix, "--trust-uninspected", "--json", user=AS_NOBODY, check=3).stdout)
    assert report["skipped"] is True
    assert [(k["key"], k["reason"]) for k in report["kept"]] == [
        (roots, "owned by another user: only its owner or root may remove it")
    ]
    assert cli("gc", "--prefix", prefix, "--trust-uninspected", check=0).stdout.startswith(f"removed {roots} ")


def test_info_reads_another_users_readable_region_without_opening_it_for_writing(prefix):
    skip_unless_nobody_can_run_python()
    key = prefix + "_readable"
    make_file(key.encode(), mode=0o644)
    result = cli("info", key, user=AS_NOBODY, check=0)
    assert "74 72 69 74 6f 6e 73 68 6d" in result.stdout  # "tritonshm"
    decoded = json.loads(cli("info", key, "--dtype", "UINT8", "--shape", "9", "--json", user=AS_NOBODY, check=0).stdout)
    assert bytes(decoded["values"]) == b"tritonshm"
    os.chmod(shm_path(key), 0o600)
    denied = cli("info", key, user=AS_NOBODY, check=1)
    assert "Permission denied" in one_line_error(denied)


def test_names_are_escaped_in_human_output_and_exact_in_json(prefix):
    forged = (prefix + "_a\nkept fake (in use)\x1b[31m").encode()
    not_utf8 = (prefix + "_b").encode() + b"\xff"
    make_file(forged)
    make_file(not_utf8)
    listing = cli("ls", check=0).stdout
    rows = [line for line in listing.splitlines() if prefix in line]
    assert len(rows) == 2, listing
    assert "\x1b" not in listing and not any(line.startswith("kept fake") for line in listing.splitlines())
    assert any(f"{prefix}_a\\nkept fake (in use)\\x1b[31m" in row for row in rows), rows
    assert any(f"{prefix}_b\\xff" in row for row in rows), rows
    keys = {r["key"] for r in json.loads(cli("ls", "--json", check=0).stdout)["regions"]}
    assert os.fsdecode(forged) in keys and os.fsdecode(not_utf8) in keys
    gc = cli("gc", "--dry-run", "--prefix", prefix, "--trust-uninspected", check=0)
    assert "\x1b" not in gc.stdout and len(gc.stdout.splitlines()) == 2, gc.stdout


def test_bad_arguments_and_unreachable_servers_are_one_line_errors():
    bad_header = cli("status", "--url", "localhost:1", "--header", "foo", check=2)
    assert "invalid header 'foo'" in one_line_error(bad_header)
    for protocol in ("http", "grpc"):
        unreachable = cli("status", "--url", "127.0.0.1:1", "--protocol", protocol, check=1)
        assert one_line_error(unreachable).startswith("tritonshm status: ")
    missing = cli("info", "--dtype", check=2)
    assert "tritonshm info: " in one_line_error(missing)


def test_a_url_with_a_scheme_is_understood_or_refused_in_one_line():
    """A URL with http:// is understood, never refused by tritonclient with a traceback from its __del__."""
    with_scheme = cli("status", "--url", "http://127.0.0.1:1", check=1)
    assert one_line_error(with_scheme).startswith("tritonshm status: "), (
        "the scheme was dropped: unreachable, not refused"
    )
    assert "scheme" not in with_scheme.stderr
    grpc = cli("status", "--url", "grpc://127.0.0.1:1", check=1)  # the scheme chooses the protocol
    assert one_line_error(grpc).startswith("tritonshm status: [StatusCode.UNAVAILABLE] "), grpc.stderr
    other = cli("status", "--url", "https://127.0.0.1:1", check=2)
    assert one_line_error(other) == (
        "tritonshm status: --url takes host:port (e.g. localhost:8000), got 'https://127.0.0.1:1' "
        "(see tritonshm status --help)\n"
    )


USAGE = "(see tritonshm {} --help)\n"
SHAPE = "invalid shape {!r} (whole numbers, 0 or more: e.g. 2,16 or 2x16)"
DTYPE = (
    "invalid data type {!r} (one Triton has: a Triton name like FP32, INT64, BYTES or a numpy name like float32, int64)"
)
SIZE = "invalid size {!r} (at most 9223372036854775807 bytes)"
PORT = "--url {!r}: the port is not in 1-65535"


BAD_ARGUMENTS = [
    # Refused when parsed, in our words, never by the binding ("incompatible function arguments").
    (["info", "/k", "--shape", "-1"], "argument --shape: " + SHAPE.format("-1")),
    (["info", "/k", "--offset", str(2**80)], "argument --offset: " + SIZE.format(str(2**80))),
    (["info", "/k", "--length", str(2**80)], "argument --length: " + SIZE.format(str(2**80))),
    (
        ["gc", "--min-age", str(2**80)],
        f"argument --min-age: invalid number of seconds '{2**80}' (a whole number, 0 or more)",
    ),
    # Accepted before, to fail later or never: a negative age spared nothing, "1,,2" was [1, 2], "a" named a lambda.
    (["gc", "--min-age", "-5"], "argument --min-age: invalid number of seconds '-5' (a whole number, 0 or more)"),
    (["info", "/k", "--shape", "1,,2"], "argument --shape: " + SHAPE.format("1,,2")),
    (["info", "/k", "--shape", "a"], "argument --shape: " + SHAPE.format("a")),
    (
        ["info", "/k", "--shape", str(2**63)],
        f"argument --shape: invalid shape '{2**63}' (more than 9223372036854775807 elements)",
    ),
    (
        ["info", "/k", "--shape", ",".join(["1"] * 33)],
        "argument --shape: invalid shape '" + ",".join(["1"] * 33) + "' (at most 32 dimensions)",
    ),
    # Types Triton does not have: S0 and V0 divided by zero, float128 failed as JSON, the others decoded as no
    # tensor a Triton server holds.
    (["info", "/k", "--dtype", "S0"], "argument --dtype: " + DTYPE.format("S0")),
    (["info", "/k", "--dtype", "V8"], "argument --dtype: " + DTYPE.format("V8")),
    (["info", "/k", "--dtype", "U4"], "argument --dtype: " + DTYPE.format("U4")),
    (["info", "/k", "--dtype", "float128"], "argument --dtype: " + DTYPE.format("float128")),
    (["info", "/k", "--dtype", "f4,i4"], "argument --dtype: " + DTYPE.format("f4,i4")),
    (["info", "/k", "--dtype", ""], "argument --dtype: " + DTYPE.format("")),
    (["info", "/k", "--dtype", "BYTES"], "--dtype BYTES needs --shape (its elements vary in size)"),
    (["create", "/k", str(2**80)], "argument size: " + SIZE.format(str(2**80))),
    (["doctor", "--capacity", "9000000T"], "argument --capacity: " + SIZE.format("9000000T")),
    # A port past 65535 is refused when parsed: gRPC would take it modulo 65536, tritonclient's __del__ print a
    # traceback.
    (["doctor", "--url", "127.0.0.1:99999"], PORT.format("127.0.0.1:99999")),
    (["status", "--url", "127.0.0.1:99999"], PORT.format("127.0.0.1:99999")),
    (["status", "--url", "127.0.0.1:99999", "--protocol", "grpc"], PORT.format("127.0.0.1:99999")),
    (["demo", "--url", "127.0.0.1:99999"], PORT.format("127.0.0.1:99999")),
    (["status", "--url", "localhost:80a"], "--url takes host:port (e.g. localhost:8000), got 'localhost:80a'"),
    (["doctor", "--url", ""], "--url takes host:port (e.g. localhost:8000), got ''"),
    (["status", "--url", ":8000"], "--url takes host:port (e.g. localhost:8000), got ':8000'"),
    (
        ["status", "--url", "grpc://127.0.0.1:1", "--protocol", "http"],
        "--url 'grpc://127.0.0.1:1' is a grpc address, but the protocol is http",
    ),
    (
        ["status", "--url", "127.0.0.1:1/v2", "--protocol", "grpc"],
        "--url '127.0.0.1:1/v2': a grpc address is host:port, without a path",
    ),
    # gRPC printed its core's log lines for a value it refuses.
    (
        ["status", "--url", "127.0.0.1:1", "--header", "x=\u00e9"],
        "argument --header: invalid header 'x=\u00e9' (expected NAME=VALUE or NAME:VALUE, the value printable ASCII)",
    ),
]


@pytest.mark.parametrize("args, error", [pytest.param(a, e, id=" ".join(a)) for a, e in BAD_ARGUMENTS])
def test_every_bad_argument_is_one_line_and_exit_2_before_anything_runs(args, error):
    result = cli(*args, check=2)
    assert one_line_error(result) == f"tritonshm {args[0]}: {error} " + USAGE.format(args[0])


def test_a_header_name_in_capitals_reaches_a_grpc_server_as_its_lowercase_name():
    """gRPC refuses metadata names in capitals ("Invalid metadata", after its core's log lines); HTTP's are any case."""
    result = cli("status", "--url", "127.0.0.1:1", "--protocol", "grpc", "--header", "Triton-Access-Token=x", check=1)
    assert one_line_error(result).startswith("tritonshm status: [StatusCode.UNAVAILABLE] "), result.stderr


def test_an_unresolvable_server_is_one_line():
    """A failed lookup is one line, with no report from nanobind of objects a traceback kept alive."""
    result = cli("status", "--url", "nosuchhost.invalid:8000", check=1)
    line = one_line_error(result)
    assert line.startswith("tritonshm status: [Errno ") and line.endswith(
        "(is the server running and the URL right?)\n"
    )


def test_a_name_that_is_not_utf8_can_be_inspected_and_removed(prefix):
    """`ls` shows such a name; `info` and `rm` raised nanobind's "incompatible function arguments" for it."""
    name = (prefix + "_c").encode() + b"\xff"
    make_file(name)
    info = cli("info", name, "--length", "9", check=0)
    assert f"{prefix}_c\\xff" in info.stdout and "74 72 69 74 6f 6e 73 68 6d" in info.stdout, info.stdout
    assert cli("rm", name, check=0).stdout == f"removed {prefix}_c\\xff\n"
    assert not os.path.exists(b"/dev/shm/" + name.lstrip(b"/"))


def test_output_that_cannot_be_written_is_one_line_and_a_reader_that_left_is_no_error(prefix):
    """A full disk was blamed on the server ("is the server running and the URL right?"); a reader that
    stops early (`| head`) has what it wanted."""
    key = prefix + "_out"
    make_file(key.encode(), size=1 << 20)
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [PY, "-m", "tritonshm.cli", "info", key], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert (result.returncode, result.stderr) == (
        1,
        "tritonshm info: cannot write the output: No space left on device\n",
    )
    reader_left = subprocess.Popen(
        [PY, "-m", "tritonshm.cli", "info", key, "--length", "1M"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader_left.stdout.read(100)
    reader_left.stdout.close()
    assert reader_left.wait(timeout=120) == 0
    assert reader_left.stderr.read() == b""
    reader_left.stderr.close()


def cli_in_memory(limit, *args, stdout=subprocess.PIPE):
    """The command with its address space limited to `limit` bytes (RLIMIT_AS):
    whatever it reads or builds must fit. One BLAS thread: each reserves memory."""

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [PY, "-m", "tritonshm.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=limited,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result


def sparse_region(key, size, writes):
    """A region of `size` bytes with only `writes` ({offset: bytes}) stored: tmpfs gives pages only where written."""
    fd = os.open(shm_path(key), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        for offset, data in writes.items():
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def test_info_reads_only_what_it_shows_of_a_region_four_times_its_memory(prefix):
    """`info KEY --dtype BYTES --shape 1` reads one element, not the whole region, and `--dtype FP32` without a
    shape reads what it shows: a 4 GiB region is inspected under a 1.5 GiB address space."""
    key, size = prefix + "_huge", 4 << 30
    sparse_region(
        key,
        size,
        {
            0: np.array([1.5, 2.5, 3.5], np.float32).tobytes(),
            size - 12: np.array([-1.5, 2.5, 1e3], np.float32).tobytes(),
            1 << 30: shm.serialize_byte_tensor(np.array([b"ab", b"c"], dtype=object)).item(),
        },
    )
    limit = 1536 << 20

    def shown(*args):
        return cli_in_memory(limit, "info", key, *args).stdout.split("open in: -\n")[1]

    assert shown("--dtype", "FP32") == (
        "float32 [1073741824] at offset 0:\n[   1.5    2.5    3.5 ...   -1.5    2.5 1000. ]\n"
    )
    assert shown("--dtype", "FP32", "--shape", "1024,1048576") == (
        "float32 [1024, 1048576] at offset 0:\n"
        "[[   1.5    2.5    3.5 ...    0.     0.     0. ]\n"
        " [   0.     0.     0.  ...    0.     0.     0. ]\n"
        " [   0.     0.     0.  ...    0.     0.     0. ]\n"
        " ...\n"
        " [   0.     0.     0.  ...    0.     0.     0. ]\n"
        " [   0.     0.     0.  ...    0.     0.     0. ]\n"
        " [   0.     0.     0.  ...   -1.5    2.5 1000. ]]\n"
    )
    assert shown("--dtype", "BYTES", "--shape", "3", "--offset", "1G") == (
        "BYTES [3] at offset 1073741824:\n[b'ab' b'c' b'']\n"
    )
    one = json.loads(
        cli_in_memory(limit, "info", key, "--dtype", "BYTES", "--shape", "1", "--offset", "1G", "--json").stdout
    )
    assert one["values"] == ["ab"] and one["decoded"] == {"dtype": "BYTES", "shape": [1], "offset": 1 << 30}
    assert shown("--offset", str(size - 16), "--length", "64") == (
        "first 16 bytes from offset 4294967280:\n"
        "fffffff0  00 00 00 00 00 00 c0 bf 00 00 20 40 00 00 7a 44  |.......... @..zD|\n"
    )


def test_info_as_json_writes_every_value_a_piece_at_a_time(prefix, tmp_path):
    """JSON shows every value: 32 Mi of them (128 MiB of FP32) are written under 1 GiB of address space, where
    building them as one list took 14 times the region."""
    key, size = prefix + "_json", 128 << 20
    sparse_region(key, size, {0: np.array([1.5, 2.5], np.float32).tobytes(), size - 4: np.float32(-3).tobytes()})
    out = tmp_path / "values.json"
    with open(out, "w") as f:
        cli_in_memory(1 << 30, "info", key, "--dtype", "FP32", "--json", stdout=f)
    with open(out) as f:
        head = f.read(4096)
        f.seek(0)
        commas = sum(piece.count(",") for piece in iter(lambda: f.read(1 << 20), ""))
        f.seek(out.stat().st_size - 64)
        tail = f.read()
    facts, values = head.split(',\n  "values": [')
    assert json.loads(facts + "\n}")["decoded"] == {"dtype": "float32", "shape": [32 << 20], "offset": 0}
    assert values.startswith("1.5, 2.5, 0.0, 0.0, ") and tail.endswith(", 0.0, -3.0]\n}\n")
    assert commas - facts.count(",") - 1 == (32 << 20) - 1  # every value, once


def test_a_name_the_output_encoding_cannot_hold_is_escaped(prefix):
    """Under an ASCII output encoding, a region named with an accent made `info` and `ls` fail (UnicodeEncodeError)."""
    key = prefix + "_caf\u00e9"
    make_file(key.encode())
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    result = subprocess.run(
        [PY, "-m", "tritonshm.cli", "info", key], capture_output=True, text=True, timeout=120, env=env
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines()[1].startswith(f"{prefix}_caf\\xe9  "), result.stdout
