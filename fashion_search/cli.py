"""The ``fashion-search`` command.

``fashion-search run [options]`` runs the notebook pipeline; ``index``, ``query``, ``add``,
``remove``, ``info`` and ``serve`` drive the search engine (:mod:`fashion_search.engine_cli`).
"""
from __future__ import annotations

import sys

ENGINE_COMMANDS = ("index", "query", "add", "remove", "info", "serve")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        from fashion_search import pipeline

        return pipeline.main(argv[1:])
    if argv and argv[0] in ENGINE_COMMANDS:
        from fashion_search import engine_cli

        return engine_cli.main(argv)
    print(f"usage: fashion-search {{run,{','.join(ENGINE_COMMANDS)}}} [options]  (--help after a command for "
          "its options)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
