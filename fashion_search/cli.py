"""The ``fashion-search`` command: ``fashion-search run [options]`` runs the notebook pipeline."""
from __future__ import annotations

import sys

from fashion_search import pipeline

COMMANDS = {"run": pipeline.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: fashion-search {{{','.join(COMMANDS)}}} [options]  (--help after a command for its options)",
              file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
