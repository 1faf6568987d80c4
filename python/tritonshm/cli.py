"""The tritonshm command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonshm", description="System shared memory for tensors.")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import demo

    demo.add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
