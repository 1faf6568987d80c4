"""The command line on a hostile /dev/shm and for every user: names that try
to forge output, another user's regions, bad arguments and unreachable
servers. Errors are one line on stderr, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

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
    """Found by the red team: tritonclient refused http://..., then printed a traceback from __del__."""
    with_scheme = cli("status", "--url", "http://127.0.0.1:1", check=1)
    assert one_line_error(with_scheme).startswith("tritonshm status: "), (
        "the scheme was dropped: unreachable, not refused"
    )
    assert "scheme" not in with_scheme.stderr
    other = cli("status", "--url", "https://127.0.0.1:1", check=1)
    assert "--url takes host:port" in one_line_error(other)
