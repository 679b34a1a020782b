"""Command line: `python -m spy_magic {record,top,dump,demo}`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..reader import ReaderError
from . import demo, dump, record, replay, top
from .signals import Terminated


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spy_magic",
        description="Sampling profiler for Python processes and Jupyter notebooks.",
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    record.add_parser(commands)
    replay.add_parser(commands)
    top.add_parser(commands)
    dump.add_parser(commands)
    demo.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ReaderError as exc:
        print(f"spy_magic: error: {exc}", file=sys.stderr)
        return 1
    except Terminated as exc:  # SIGTERM, SIGHUP: as a shell reports a process they ended
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left, nothing more to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
