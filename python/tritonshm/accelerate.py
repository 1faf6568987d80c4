"""python -m tritonshm.accelerate [--inline-threshold BYTES] [--capacity BYTES] [--stats] SCRIPT [ARGS...]
python -m tritonshm.accelerate [OPTIONS] -m MODULE [ARGS...]

Runs a program that uses tritonclient with tritonshm.triton.accelerate() in
force, without editing it (as `python -m cProfile` runs one under the
profiler): the script runs as __main__ with its own sys.argv, and its exit
code is the runner's. With --stats, one line goes to stderr at the end:
`tritonshm stats: ` and the JSON of the acceleration's stats().
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import runpy
import sys
import zipfile
from typing import List, Optional

__all__ = ["main"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(text: str) -> int:
    """Bytes: 65536, 64K, 64KiB, 16M, 1G."""
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = cleaned, ""
    if cleaned and cleaned[-1] in _UNITS:
        number, unit = cleaned[:-1], cleaned[-1]
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 0, 65536, 64K, 16MiB, 1G)")
    return int(number) * _UNITS[unit]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tritonshm.accelerate",
        description="Run a tritonclient program with its large tensors sent through shared memory, unedited.",
        usage="%(prog)s [--inline-threshold BYTES] [--capacity BYTES] [--stats] (SCRIPT | -m MODULE) [ARGS ...]",
    )
    parser.add_argument(
        "--inline-threshold",
        type=_size,
        metavar="BYTES",
        help="tensors of at least this many bytes go through shared memory (default 64K; 0: every non-empty one)",
    )
    parser.add_argument("--capacity", type=_size, metavar="BYTES", help="the first region of each server's pool")
    parser.add_argument("--stats", action="store_true", help="print the acceleration's stats on stderr at the end")
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module as `python -m MODULE` does")
    parser.add_argument("args", nargs="*", metavar="SCRIPT [ARGS ...]", help="the program and its own arguments")
    return parser


_VALUED = ("--inline-threshold", "--capacity")


def _program_starts(argv: List[str]) -> int:
    """Where the program's part of the command line starts: at SCRIPT (the
    first word that is neither an option nor an option's value) or at -m, so
    that everything after SCRIPT or MODULE is the program's own, options too."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "-m" or word.startswith("-m") and not word.startswith("--"):
            return index
        if word == "--":
            return index + 1
        if not word.startswith("-"):
            return index
        index += 2 if word in _VALUED else 1
    return len(argv)


def _has_main(path: str) -> bool:
    """Whether a folder or a zip file holds the __main__ module python runs."""
    if os.path.isdir(path):
        return any(os.path.isfile(os.path.join(path, name)) for name in ("__main__.py", "__main__.pyc"))
    try:
        with zipfile.ZipFile(path) as archive:
            return bool({"__main__.py", "__main__.pyc"} & set(archive.namelist()))
    except (OSError, zipfile.BadZipFile):
        return False


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    words = sys.argv[1:] if argv is None else list(argv)
    start = _program_starts(words)
    options = parser.parse_args(words[:start])
    program = words[start:]
    if program and program[0].startswith("-m"):
        options.module = program[0][2:] or (program[1] if len(program) > 1 else None)
        program = program[1:] if program[0] != "-m" else program[2:]
        if options.module is None:
            parser.error("argument -m: expected one argument")
    options.args = program
    if options.module is None and not options.args:
        parser.error("give the SCRIPT to run, or -m MODULE")
    # What python says when there is nothing to run, before anything is accelerated.
    if options.module is not None:
        try:
            found = importlib.util.find_spec(options.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            print(f"{sys.executable}: No module named {options.module}", file=sys.stderr)
            return 1
    elif not os.path.exists(options.args[0]):
        path = os.path.abspath(options.args[0])
        print(f"{sys.executable}: can't open file {path!r}: [Errno 2] No such file or directory", file=sys.stderr)
        return 2
    elif (os.path.isdir(options.args[0]) or zipfile.is_zipfile(options.args[0])) and not _has_main(options.args[0]):
        print(
            f"{sys.executable}: can't find '__main__' module in {os.path.abspath(options.args[0])!r}", file=sys.stderr
        )
        return 1
    from ._core import SharedMemoryException
    from .triton import accelerate

    try:
        handle = accelerate(inline_threshold=options.inline_threshold, capacity=options.capacity)
    except SharedMemoryException as error:  # a size the pool refuses (--capacity 0, past 64 bits)
        parser.error(str(error))
    code: object = 0
    try:
        if options.module is not None:
            sys.argv = [options.module, *options.args]
            runpy.run_module(options.module, run_name="__main__", alter_sys=True)
        else:
            script, *args = options.args
            sys.argv = [script, *args]
            if os.path.isfile(script) and not zipfile.is_zipfile(script):
                # As `python SCRIPT` does: the script's folder first on the path
                # (run_path puts a folder or a zip application there itself).
                sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    finally:
        if options.stats:
            print("tritonshm stats: " + json.dumps(handle.stats(), sort_keys=True), file=sys.stderr, flush=True)
        handle.close()
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # as the interpreter does with sys.exit("message")
    return 1


if __name__ == "__main__":
    sys.exit(main())
