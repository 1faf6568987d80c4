"""The tritonshm command line: inspect, create and clean up shared memory
regions, check a deployment, and run the demo.

Exit codes: 0 success, 1 the operation failed (one line on stderr says why),
2 wrong usage, 3 `gc` skipped an unused region it may not remove (another
user's: each is named on stderr with the reason),
4 `doctor` found a problem (each is printed with its fix).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pwd
import re
import stat
import sys
import time
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple

from ._core import SharedMemoryException
from ._units import human_size

EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED, EXIT_PROBLEMS = 1, 2, 3, 4
# Sizes, offsets and seconds are read as a file offset (off_t) holds them.
LARGEST = (1 << 63) - 1
# numpy 1 allows 32 dimensions (numpy 2: 64).
MAX_DIMS = 32


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), never a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def shown(name: str) -> str:
    """A name as human-readable output shows it: characters that are not
    printable (newlines, terminal escapes, bytes that are not UTF-8) and the
    backslash are escaped, so a name cannot forge a row or reach the terminal."""
    out = []
    for c in name:
        if c == "\\":
            out.append("\\\\")
        elif 0xDC80 <= ord(c) <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogate)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif not c.isprintable():
            out.append(repr(c)[1:-1] if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def _parse_header(text: str) -> Tuple[str, str]:
    """NAME=VALUE or NAME:VALUE (a header name holds neither character). The
    value is printable ASCII: gRPC metadata allows no other, and HTTP's
    tritonclient refuses control characters only once it sends."""
    match = re.fullmatch(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*[=:]\s*([\x20-\x7e]*?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid header {text!r} (expected NAME=VALUE or NAME:VALUE, the value printable ASCII)"
        )
    return match.group(1).lower(), match.group(2)  # gRPC metadata names are lowercase; HTTP's are any case


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+)\s*([kmgt]?)(i?b?)\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 4096, 64K, 16MiB, 1G)")
    number, unit = int(match.group(1)), match.group(2).lower()
    size = number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    if size > LARGEST:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (at most {LARGEST} bytes)")
    return size


def _parse_key(text: str) -> str:
    """A key as given, once the core has found it a valid POSIX shared memory name."""
    from . import _core

    try:
        _core.normalize_key(text)
    except SharedMemoryException as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _parse_seconds(text: str) -> int:
    if not re.fullmatch(r"\s*[0-9]+\s*", text) or int(text) > LARGEST:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r} (a whole number, 0 or more)")
    return int(text)


def _parse_shape(text: str) -> List[int]:
    """2,16 or 2x16; an empty shape is a scalar."""
    items = text.replace("x", ",").split(",") if text.strip() else []
    if not all(re.fullmatch(r"\s*[0-9]+\s*", item) for item in items):
        raise argparse.ArgumentTypeError(f"invalid shape {text!r} (whole numbers, 0 or more: e.g. 2,16 or 2x16)")
    dims = [int(item) for item in items]
    if len(dims) > MAX_DIMS:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r} (at most {MAX_DIMS} dimensions)")
    if math.prod(d for d in dims if d) > LARGEST:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r} (more than {LARGEST} elements)")
    return dims


def _parse_dtype(text: str) -> str:
    """Triton's name of a data type given by its Triton name (FP32, BYTES; any
    case) or its numpy name (float32, <f4, object): only types Triton has."""
    from . import _core

    name = text.strip().upper()
    if name == "OBJECT":
        return "BYTES"
    if name in {triton for triton, _, _ in _core.data_types()}:
        return name
    import numpy as np

    from .tensor import np_to_triton_dtype

    try:
        dtype = np.dtype(text)
    except Exception:  # noqa: BLE001 - numpy raises TypeError, ValueError or SyntaxError for what it cannot read
        dtype = None
    triton = None if dtype is None or dtype.kind in "SU" else np_to_triton_dtype(dtype)
    if triton is None:
        raise argparse.ArgumentTypeError(
            f"invalid data type {text!r} (one Triton has: a Triton name like FP32, INT64, BYTES or a numpy name "
            "like float32, int64)"
        )
    return str(triton)


def _parse_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid mode {text!r} (octal, e.g. 0600)") from None
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"invalid mode {text!r}")
    return mode


def _human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _info_json(info: Any) -> Dict[str, Any]:
    return {
        "key": info.key,
        "size": info.size,
        "owner": _owner(info.owner),
        "uid": info.owner,
        "mode": f"{info.mode:04o}",
        "modified": info.modified,
        "age_seconds": max(0, int(time.time() - info.modified)),
        "mapped_by": info.mapped_by,
        "opened_by": info.opened_by,
        "in_use": info.in_use,
        "foreign": info.foreign,
    }


def _table(rows: List[Dict[str, Any]]) -> str:
    headers = ["KEY", "SIZE", "OWNER", "MODE", "AGE", "PIDS"]
    lines = [headers] + [
        [
            shown(r["key"]),
            human_size(r["size"]),
            r["owner"],
            stat.filemode(0o100000 | int(r["mode"], 8)),
            _human_age(r["age_seconds"]),
            ",".join(map(str, sorted(set(r["mapped_by"]) | set(r["opened_by"])))) or "-",
        ]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _uninspected_note(pids: List[int]) -> str:
    names = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                names.append(f"{pid} ({f.read().strip()})")
        except OSError:
            names.append(str(pid))
    return "process(es) " + ", ".join(names) + " could not be inspected (needs root with CAP_SYS_PTRACE)"


def cmd_ls(args: argparse.Namespace) -> int:
    from . import _core

    regions, uninspected = _core.list_regions()
    rows = [_info_json(info) for info in regions]
    if args.json:
        print(json.dumps({"regions": rows, "uninspected_pids": uninspected}, indent=2))
    else:
        print(_table(rows) if rows else "no shared memory regions in /dev/shm")
        if uninspected and rows:
            print("note: PIDS may be incomplete: " + _uninspected_note(uninspected), file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ._contents import Tensor, hex_pieces, hexdump_lines
    from .inventory import region_info

    info = region_info(args.key)
    if info is None:
        raise SharedMemoryException(f"no shared memory region '{shown(args.key)}' in /dev/shm")
    if args.offset > info.size:
        raise SharedMemoryException(
            f"offset {args.offset} is past the end of '{shown(info.key)}', which holds {info.size} bytes"
        )
    row = _info_json(info)
    # Only what is shown is read, a piece at a time, through a read-only
    # descriptor (pread): another user's readable region works, nothing is
    # mapped, and a region larger than this process's memory is no problem.
    tensor = None
    if args.dtype:
        shape = args.shape
        if shape is None and args.length is not None and args.dtype != "BYTES":
            shape = [min(args.length, info.size - args.offset) // Tensor.itemsize(args.dtype)]
        tensor = Tensor(args.key, args.dtype, shape, args.offset, info.size, shown(info.key))
        row["decoded"] = {"dtype": tensor.dtype_name, "shape": tensor.shape, "offset": args.offset}
    length = 256 if args.length is None else args.length
    if args.json:
        if tensor:
            tensor.check_decodes()  # the document is written in pieces: never half of one
        text = json.dumps(row, indent=2)
        sys.stdout.write(text[: -len("\n}")] + (',\n  "values": ' if tensor else ',\n  "hex": "'))
        pieces = tensor.json_values() if tensor else hex_pieces(args.key, args.offset, length)
        for piece in pieces:
            sys.stdout.write(piece)
        sys.stdout.write("\n}\n" if tensor else '"\n}\n')
        return 0
    print(_table([row]))
    print(f"mapped by: {info.mapped_by or '-'}   open in: {info.opened_by or '-'}")
    if tensor:
        print(f"{tensor.dtype_name} {tensor.shape} at offset {args.offset}:")
        print(tensor.printed())
        return 0
    lines = hexdump_lines(args.key, args.offset, length)
    first = next(lines, None)
    shown_length = min(length, info.size - args.offset)
    print(f"first {shown_length} bytes from offset {args.offset}:")
    print(first if first is not None else "(none)")
    for line in lines:
        print(line)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from .inventory import create_region

    size = create_region(args.key, args.size, mode=args.mode)
    key = args.key if args.key.startswith("/") else "/" + args.key
    print(f"created {shown(key)} ({size} bytes, mode {args.mode:04o}); remove it with `tritonshm rm`")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from .inventory import remove_region

    status = 0
    for key in args.keys:
        try:
            if remove_region(key, force=args.force):
                print(f"removed {shown(key)}")
            else:
                print(f"tritonshm rm: no shared memory region '{shown(key)}'", file=sys.stderr)
                status = 1
        except SharedMemoryException as exc:
            print(f"tritonshm rm: {_one_line(exc)}", file=sys.stderr)
            status = 1
    return status


def cmd_gc(args: argparse.Namespace) -> int:
    from .inventory import collect_garbage

    report = collect_garbage(
        dry_run=args.dry_run,
        min_age_seconds=args.min_age,
        prefix=args.prefix,
        trust_uninspected=args.trust_uninspected,
        include_foreign=args.include_foreign,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "removed": [_info_json(i) for i in report.removed],
                    "kept": [dict(_info_json(k.region), reason=k.reason) for k in report.kept],
                    "uninspected_pids": report.uninspected,
                    "skipped": report.skipped,
                },
                indent=2,
            )
        )
        return EXIT_SKIPPED if report.skipped else 0
    verb = "would remove" if args.dry_run else "removed"
    for info in report.removed:
        print(f"{verb} {shown(info.key)} ({human_size(info.size)}, unused)")
    skipped = []
    for kept in report.kept:
        info = kept.region
        users = sorted(set(info.mapped_by) | set(info.opened_by))
        why = f"in use by {users}" if users else kept.reason
        if kept.reason.startswith("owned by another user"):
            why = f"owned by {_owner(info.owner)}: only its owner or root may remove it"
        if info.foreign and not info.in_use:
            why += ": --include-foreign removes it"
        if kept.reason.startswith("owned by another user"):
            skipped.append(f"skipped {shown(info.key)} ({why})")
        else:
            print(f"kept {shown(info.key)} ({why})")
    for line in skipped:  # on stderr, with the exit status: scripts see them
        print(line, file=sys.stderr)
    if report.uninspected and any(k.reason.startswith("some processes") for k in report.kept):
        print(
            "note: unused regions were kept because "
            + _uninspected_note(report.uninspected)
            + " and might use them; pass --trust-uninspected if they use no shared memory",
            file=sys.stderr,
        )
    if not report.removed and not report.kept:
        print("nothing to collect")
    return EXIT_SKIPPED if report.skipped else 0


def cmd_status(args: argparse.Namespace) -> int:
    from .triton.refusals import server_refusal
    from .triton.status import connection_hint, shared_memory_status

    try:
        if args.protocol == "grpc":
            import tritonclient.grpc as client_module
        else:
            import tritonclient.http as client_module
    except ImportError as exc:
        raise SharedMemoryException(
            f"status needs tritonclient: pip install 'tritonclient[{args.protocol}]' ({exc})"
        ) from exc
    headers = dict(args.header) if args.header else None
    client = client_module.InferenceServerClient(url=args.url)
    try:
        rows = shared_memory_status(client, headers)
    except Exception as error:  # noqa: BLE001 - a refusal, explained where we can
        refusal = server_refusal(error, f"unable to read the shared memory status of {args.url}")
        if refusal is not error:
            raise refusal from error
        hint = connection_hint(error, args.url, args.protocol)
        if hint:
            raise SharedMemoryException(f"{type(error).__name__}: {_one_line(error)}{hint}") from error
        raise
    finally:
        client.close()
    if args.json:
        print(json.dumps({"url": args.url, "regions": rows}, indent=2))
        return 0
    if not rows:
        print("no registered regions, and none in /dev/shm")
        return 0
    table = [["STATE", "NAME", "KEY", "REGISTERED", "LOCAL SIZE", "PIDS"]]
    for r in rows:
        registered = "-" if r["byte_size"] is None else f"{human_size(r['byte_size'])} @ {r['offset']}"
        local = "-" if r["local_size"] is None else human_size(r["local_size"])
        state = r["state"] + (" (another tool's)" if r["foreign"] else "")
        table.append(
            [
                state,
                shown(r["name"] or "-"),
                shown(r["key"]),
                registered,
                local,
                ",".join(map(str, r["mapped_by"])) or "-",
            ]
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(table[0]))]
    print("\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in table))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    report = diagnose(
        capacity=args.capacity,
        url=args.url,
        protocol=args.protocol,
        headers=dict(args.header) if args.header else None,
    )
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for check in report.checks:
            print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
            if check.fix:
                print(f"      fix: {check.fix}")
        print("everything holds" if report.ok else "problems found: apply the fixes above")
    return 0 if report.ok else EXIT_PROBLEMS


# Shown at the end of each subcommand's --help.
EXAMPLES = {
    "ls": ["tritonshm ls", "tritonshm ls --json"],
    "info": ["tritonshm info /input_simple", "tritonshm info /output_simple --dtype INT32 --shape 1,16 --offset 64"],
    "create": ["tritonshm create /input_simple 64K --mode 0660"],
    "rm": ["tritonshm rm /left_by_crash", "tritonshm rm --force /stuck_region"],
    "gc": ["tritonshm gc --dry-run", "tritonshm gc --min-age 3600 --prefix /myapp_"],
    "status": ["tritonshm status --url localhost:8000", "tritonshm status --url localhost:8001 --protocol grpc --json"],
    "doctor": [
        "tritonshm doctor --capacity 1G",
        "tritonshm doctor --url localhost:8000 --capacity 512M",
        "tritonshm doctor --url localhost:8001 --protocol grpc --header triton-grpc-protocol-triton-access-token:TOKEN",
    ],
    "demo": [
        "tritonshm demo",
        "tritonshm demo --url localhost:8000",
        "tritonshm demo --url localhost:8001 --protocol grpc",
    ],
}


def add_subcommand(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with examples."""
    epilog = "examples:\n" + "\n".join("  " + line for line in EXAMPLES.get(name, []))
    parser: argparse.ArgumentParser = sub.add_parser(
        name, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )  # an OneLineParser: subparsers take the class of their parent
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tritonshm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_subcommand(sub, "ls", help="list regions in /dev/shm with size, owner, mode, age and the PIDs using them")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_ls)

    p = add_subcommand(sub, "info", help="show one region: its facts and a hexdump or decoded view")
    p.add_argument("key", type=_parse_key)
    p.add_argument("--dtype", type=_parse_dtype, help="decode as this type (FP32, INT64, BYTES, or a numpy name)")
    p.add_argument(
        "--shape",
        type=_parse_shape,
        help="shape to decode, e.g. 2,16 or 2x16; '' for a scalar (default: as many elements as fit; BYTES needs one)",
    )
    p.add_argument("--offset", type=_parse_size, default=0, help="byte offset to start at")
    p.add_argument(
        "--length",
        type=_parse_size,
        help="bytes to show: to hexdump (default 256), or with --dtype and no --shape, to decode (default: to the end)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_info, check=_check_info)

    p = add_subcommand(sub, "create", help="create a region that stays until `tritonshm rm`")
    p.add_argument("key", type=_parse_key)
    p.add_argument("size", type=_parse_size, help="bytes, or with a unit: 64K, 16MiB, 1G")
    p.add_argument("--mode", type=_parse_mode, default=0o600, help="permission bits, octal (default 0600)")
    p.set_defaults(run=cmd_create)

    p = add_subcommand(sub, "rm", help="remove regions (refuses one a live process uses, unless --force)")
    p.add_argument("keys", nargs="+", metavar="KEY", type=_parse_key)
    p.add_argument("--force", action="store_true", help="remove even if a live process uses it")
    p.set_defaults(run=cmd_rm)

    p = add_subcommand(sub, "gc", help="remove regions no live process maps or holds open (left by crashes)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    p.add_argument(
        "--min-age", type=_parse_seconds, default=0, metavar="SECONDS", help="spare regions modified more recently"
    )
    p.add_argument("--prefix", default="", help="only keys starting with this")
    p.add_argument(
        "--trust-uninspected", action="store_true", help="remove even though some processes could not be inspected"
    )
    p.add_argument(
        "--include-foreign",
        action="store_true",
        help="also remove other tools' unused regions (Triton's Python backend and PyTriton's, psm_* of Python)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_gc)

    p = add_subcommand(sub, "status", help="a Triton server's registered regions joined with this host's /dev/shm")
    p.add_argument("--url", required=True, help="the server, e.g. localhost:8000 (HTTP) or localhost:8001 (gRPC)")
    _add_protocol_option(p)
    _add_header_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_status, check=_resolve_url)

    p = add_subcommand(
        sub, "doctor", help="check /dev/shm and a server for shared memory, with the fix for each problem"
    )
    p.add_argument("--url", help="also check this Triton server, e.g. localhost:8000 (HTTP) or localhost:8001 (gRPC)")
    _add_protocol_option(p)
    p.add_argument("--capacity", type=_parse_size, help="the shared memory you plan to use, e.g. 512M or 2G")
    _add_header_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_doctor, check=_resolve_url)

    from . import demo

    p = add_subcommand(sub, "demo", help="run Triton's add/sub shared memory flow end to end", description=demo.__doc__)
    p.add_argument("--url", help="run against a Triton server at HOST:PORT instead of the embedded one")
    _add_protocol_option(p)
    p.add_argument(
        "--model",
        default="simple",
        help="model with INT32 INPUT0/INPUT1 [1,16] -> OUTPUT0 (sum), OUTPUT1 (difference); default simple",
    )
    p.set_defaults(run=demo.run, check=_resolve_url)
    return parser


def _add_protocol_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol", choices=["http", "grpc"], help="protocol for --url (default: its http:// or grpc://, else http)"
    )


def _add_header_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--header",
        action="append",
        type=_parse_header,
        metavar="NAME=VALUE",
        help="a header for the server, e.g. triton-access-token=TOKEN or NAME:VALUE (repeatable)",
    )


# Checks of arguments taken together, run once the arguments are read: a
# SharedMemoryException is a usage error.


def _check_info(args: argparse.Namespace) -> None:
    if args.dtype == "BYTES" and args.shape is None:
        raise SharedMemoryException("--dtype BYTES needs --shape (its elements vary in size)")
    if args.shape is not None and not args.dtype:
        raise SharedMemoryException("--shape needs --dtype (the type of its elements)")
    if args.shape is not None and args.length is not None:
        raise SharedMemoryException("--shape and --length both say how much to show: give one")


def _resolve_url(args: argparse.Namespace) -> None:
    """The protocol from --protocol, else from --url's scheme, else http; --url
    as tritonclient takes it (host:port)."""
    from .triton.status import server_address

    url = args.url
    scheme = url.partition("://")[0] if url and "://" in url else None
    if args.protocol is None:
        args.protocol = scheme if scheme in ("http", "grpc") else "http"
    if url is not None:
        args.url = server_address(url, args.protocol)


class _OutputFailed(Exception):
    """Writing the command's output failed: the reader went away (`| head`),
    or a full disk."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


class _Output:
    """stdout, telling a failure to write the output from every other OSError
    (a socket to the server fails with the same errors)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as exc:
            raise _OutputFailed(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _OutputFailed(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _drop_output() -> None:
    """Points stdout at /dev/null, so that the interpreter's flush at exit has
    nothing to fail on (it would print "Exception ignored ...")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def main(argv: Optional[List[str]] = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # a name the terminal's encoding lacks is escaped, not an error
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)  # a usage error exits 2 here, in one line
    except KeyboardInterrupt:  # while --dtype imports numpy, say
        print("tritonshm: interrupted", file=sys.stderr)
        return 130
    prog = f"tritonshm {args.command}"
    try:
        if hasattr(args, "check"):
            args.check(args)
    except SharedMemoryException as exc:
        print(f"{prog}: {_one_line(exc)} (see {prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    stdout, sys.stdout = sys.stdout, _Output(sys.stdout)  # type: ignore[assignment]
    try:
        status = run(args)
        sys.stdout.flush()
        return status
    except _OutputFailed as failed:
        _drop_output()
        if isinstance(failed.error, BrokenPipeError):  # the reader went away (`| head`): it had what it wanted
            return 0
        print(f"{prog}: cannot write the output: {failed}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - an operator gets one line, never a traceback
        print(
            f"{prog}: {_one_line(exc if isinstance(exc, SharedMemoryException) else _describe(exc))}", file=sys.stderr
        )
        return EXIT_FAILED
    finally:
        sys.stdout = stdout


def _describe(exc: BaseException) -> str:
    """An exception from a library (tritonclient, the OS) as one readable line."""
    text = str(exc) or repr(exc)
    if isinstance(exc, OSError) or "Connection" in type(exc).__name__ or "connect" in text.lower():
        return f"{text} (is the server running and the URL right?)"
    return f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
