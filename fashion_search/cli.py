"""The ``fashion-search`` command: one argparse tree for both wings.

``run`` executes the notebook pipeline (:mod:`fashion_search.pipeline.runner`); ``index``,
``query``, ``add``, ``remove``, ``compact``, ``info``, ``verify`` and ``serve`` drive the search engine
(:mod:`fashion_search.search.commands`). Building the parser imports nothing heavy, and a
command imports only what it needs, so ``--help`` and ``info`` answer without loading
TensorFlow. A user mistake, or a disk that is full or read-only, prints one line on stderr
and exits with 2.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys

from fashion_search.backbone_specs import BACKBONES, WEIGHT_CHOICES
from fashion_search.params import INDEX_BACKENDS, INDEX_TYPES, MODEL_RUNTIMES

DEFAULT_INDEX = "outputs/index"
EXAMPLES = {
    "run": ["fashion-search run", "fashion-search run --params configs/fashion-products-dev.yaml",
            "fashion-search run --only 04,05 --set evaluate.ks=[1,5,20]"],
    "index": ["fashion-search index ../shared/data/fashion-products-dev --index outputs/dev-index",
              "fashion-search index photos/ --metadata photos.csv "
              "--model outputs/default/models/efficientnet_lite0/softmax",
              "fashion-search index fashion-mnist --split test --index outputs/fm-index"],
    "query": ["fashion-search query my-photo.jpg --index outputs/dev-index --top-k 5",
              "fashion-search query my-photo.jpg --filter gender=Women --filter price=..100 --json",
              "fashion-search query --like 10007 --colour navy --index outputs/dev-index"],
    "add": ["fashion-search add new-photos/ --metadata new-photos.csv --index outputs/dev-index",
            "fashion-search add one.jpg two.jpg --index outputs/dev-index"],
    "remove": ["fashion-search remove 10007 10017 --index outputs/dev-index"],
    "compact": ["fashion-search compact --index outputs/dev-index"],
    "info": ["fashion-search info --index outputs/dev-index", "fashion-search info --index outputs/dev-index --json"],
    "verify": ["fashion-search verify --index outputs/dev-index"],
    "serve": ["FASHION_SEARCH_API_KEY=secret fashion-search serve --index outputs/dev-index --port 8000",
              "fashion-search serve --index outputs/dev-index --host 0.0.0.0   # read-only, every interface"],
}


def _examples(*commands: str) -> str:
    lines = [f"  {line}" for command in commands for line in EXAMPLES[command][:3 if len(commands) == 1 else 1]]
    return "examples:\n" + "\n".join(lines)


def _command(commands, name: str, summary: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary and its examples."""
    description = kwargs.pop("description", summary[0].upper() + summary[1:])
    return commands.add_parser(name, help=summary, description=description, epilog=_examples(name),
                               formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def _run(args: argparse.Namespace) -> int:
    from fashion_search.pipeline.runner import run_command

    return run_command(args)


def _engine(name: str):
    """The search engine's command ``name``, imported when it runs."""
    def command(args: argparse.Namespace) -> int:
        from fashion_search.search import commands

        return getattr(commands, f"cmd_{name}")(args)
    return command


def _add_run(commands) -> None:
    run = _command(commands, "run", "run the notebook pipeline (01_data … 06_search) on a parameter file",
                              description="Run the numbered notebooks in order with papermill and export each to "
                                          "HTML; stages already up to date are skipped.")
    run.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter, e.g. --set finetune.frozen_epochs=1 (repeatable)")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--only", help="comma-separated stages to run, e.g. 04,05")
    group.add_argument("--from", dest="start", help="run from this stage on, e.g. 03")
    run.add_argument("--force", action="store_true", help="re-run stages even if up to date")
    run.add_argument("--outputs", default="outputs", help="folder holding the runs (default: outputs)")
    run.add_argument("--verbose", action="store_true",
                     help="also stream the notebooks' warnings (their progress and epochs always stream)")
    run.set_defaults(run=_run)


def _positive_int(text: str) -> int:
    """An argument that must be a whole number ≥ 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got '{text}'")
    return int(text)


def _non_negative(text: str) -> float:
    """An argument that must be a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got '{text}'")
    return value


def _between(low: float, high: float):
    """An argument type: a number in ``low..high``."""
    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number in {low:g}..{high:g}, got '{text}'")
        return value
    return number


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", default=DEFAULT_INDEX, help=f"index folder (default {DEFAULT_INDEX})")
    parser.add_argument("--params", help="parameter file whose 'index' block to use (default ./params.yaml if present)")


def _runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=MODEL_RUNTIMES, help="what runs the model: onnx (ONNX Runtime), tensorflow, "
                        "or auto (onnx when its output matches the Keras model's); default: index.runtime")


def _add_engine(commands) -> None:
    index = _command(commands, "index", "build a search index of a catalogue")
    index.add_argument("catalogue", help="a folder of photos (with optional labels.csv / metadata.csv), a Farfetch "
                                         "listings folder, or 'fashion-mnist'")
    _common(index)
    index.add_argument("--layout", choices=("auto", "photo_folder", "folder", "farfetch", "fashion_mnist",
                                            "fashion-mnist"), default="auto",
                       help="the catalogue's source (default: recognised from the folder)")
    index.add_argument("--metadata", help="metadata CSV with an 'id' column (default: labels.csv or metadata.csv)")
    index.add_argument("--split", choices=("train", "test", "all"), default="test",
                       help="Fashion-MNIST images to index")
    index.add_argument("--model", help=f"fashion_lite0 (the shipped model, the default), a backbone used "
                                       f"frozen ({', '.join(BACKBONES)}) or a trained model folder "
                                       "(default: index.model)")
    index.add_argument("--weights", choices=WEIGHT_CHOICES,
                       help="a backbone's weights: imagenet, or none (random, for tests); default: index.weights")
    index.add_argument("--image-size", type=int, help="the square side photos are framed to, in pixels "
                                                      "(default: the backbone's own, or index.image_size)")
    index.add_argument("--type", choices=INDEX_TYPES, help="index kind (default: index.type)")
    index.add_argument("--backend", choices=INDEX_BACKENDS, help="where the vectors are searched: faiss (a file in "
                       "the index folder) or milvus (a collection at --uri); default: index.backend")
    index.add_argument("--uri", help="milvus: a local path (Milvus Lite, the default <index>/milvus.db) or "
                                     "http://host:19530 (a Milvus server)")
    _runtime(index)
    index.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="embed on a Ray cluster: alone, index.ray_address (default: Ray started on this machine); "
                            "or the cluster's address, e.g. auto, head-host:6379, ray://head-host:10001")
    index.add_argument("--overwrite", action="store_true", help="replace an existing index")
    index.set_defaults(run=_engine("index"))

    query = _command(commands, "query", "search the index by photo, by product or by colour")
    query.add_argument("photo", nargs="?", help="query photo")
    _common(query)
    query.add_argument("--like", metavar="PRODUCT_ID", help="more like this catalogue product (itself excluded)")
    query.add_argument("--colour", "--color", help="a colour name or #rrggbb: alone, search by swatch; with a photo, "
                                                   "prefer that colour")
    query.add_argument("--colour-weight", type=_between(0.0, 1.0), help="0..1: blend of colour closeness into the order "
                                                           "(default 0.5 with --colour, else 0)")
    query.add_argument("--match-colour", type=_between(0.0, 5.0), metavar="FACTOR",
                       help="indexes of a fused model: how much the photo's own colour counts, 1 = as chosen "
                            "on validation (default), 0 = not at all, 2 = twice")
    query.add_argument("--top-k", type=_positive_int, default=10, help="how many results (default 10)")
    query.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                       help="category=shoes, brand=a,b, price=50..200, colour=red; repeat to combine")
    query.add_argument("--garment", type=int, metavar="N", help="search garment N of those found in the photo "
                       "(1, the main one, is the default; the output lists them)")
    query.add_argument("--box", metavar="X0,Y0,X1,Y1", help="search this box of the photo (in its pixels) instead")
    query.add_argument("--whole-photo", action="store_true", help="search the whole photo: no garment localiser")
    query.add_argument("--json", action="store_true", help="results as JSON")
    query.add_argument("--contact-sheet", metavar="PNG", help="also draw the results into this PNG")
    query.add_argument("--model", help="refuse unless the index was built with this model")
    _runtime(query)
    query.set_defaults(run=_engine("query"))

    add = _command(commands, "add", "add photos to the index (an id already there is replaced)")
    add.add_argument("photos", nargs="+", help="photos and folders")
    _common(add)
    add.add_argument("--metadata", help="metadata CSV with an 'id' column")
    _runtime(add)
    add.set_defaults(run=_engine("add"))

    remove = _command(commands, "remove", "remove products from the index")
    remove.add_argument("ids", nargs="+", help="product ids to remove (every photo of each)")
    _common(remove)
    remove.set_defaults(run=_engine("remove"))

    compact = _command(commands, "compact", "drop removed rows, rebuild the index's structure, clean debris")
    _common(compact)
    compact.set_defaults(run=_engine("compact"))

    info = _command(commands, "info", "describe the index: size, kind, model, filters")
    _common(info)
    info.add_argument("--json", action="store_true", help="the same as JSON")
    info.set_defaults(run=_engine("info"))

    verify = _command(commands, "verify", "check every file of the index against the checksums written with it")
    _common(verify)
    verify.set_defaults(run=_engine("verify"))

    serve = _command(commands, "serve", "serve the index over HTTP, with a web page")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload (default 10)")
    serve.add_argument("--max-upload-pixels", type=int, default=16_000_000,
                       help="largest photo decoded for a request, in pixels (default 16,000,000)")
    serve.add_argument("--max-batch", type=_positive_int, default=16,
                       help="photos of concurrent requests the model embeds in one call (default 16; 1: one call "
                            "per photo)")
    serve.add_argument("--max-wait-ms", type=_non_negative, default=2.0,
                       help="how long a request waits for others to share its model call (default 2)")
    serve.add_argument("--max-connections", type=_positive_int, default=500,
                       help="open connections at most; beyond, the one stalled longest (waiting for headers, "
                            "behind its body's pace, not reading its answer) is closed (default 500)")
    _runtime(serve)
    serve.set_defaults(run=_engine("serve"))


def build_parser() -> argparse.ArgumentParser:
    """Every command of ``fashion-search``, each with its options."""
    parser = argparse.ArgumentParser(
        prog="fashion-search",
        description="Fashion image search: measure backbones in the notebook pipeline (run), and search "
                    "your own catalogue by photo (index, query, add, remove, compact, info, verify, serve).",
        epilog=_examples(*EXAMPLES) + "\n\n'fashion-search COMMAND --help' lists a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_engine(commands)
    parser.set_defaults(command_parsers=commands.choices)
    return parser


def _refuse_unknown(args: argparse.Namespace, unknown: list[str]) -> None:
    """Name options the command does not know, with its own usage and the closest it has
    (``--topk``: did you mean ``--top-k``?); exits with 2."""
    command = args.command_parsers[args.command]
    known = [option for action in command._actions for option in action.option_strings]
    hints = [f"{word} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(word.split("=")[0], known, 1))
             else word for word in unknown]
    command.error(f"unrecognized arguments: {' '.join(hints)}")


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors that are a user's mistake: one line, exit code 2, no traceback."""
    from fashion_search.data.catalog import CatalogueError, DatasetNotFoundError
    from fashion_search.images import UnusableImageError
    from fashion_search.models.shipped import ShippedModelError
    from fashion_search.params import ConfigError
    from fashion_search.colour import ColourError
    from fashion_search.search.embedding.embedder import ModelError
    from fashion_search.search.index.filters import FilterError
    from fashion_search.search.embedding.runtime import RuntimeUnavailableError
    from fashion_search.search.embedding.garments import GarmentError
    from fashion_search.search.index.store import ProductIndexError
    from fashion_search.search.serving.listening import AddressInUseError

    return (ConfigError, DatasetNotFoundError, CatalogueError, ModelError, FilterError, UnusableImageError,
            ProductIndexError, ColourError, RuntimeUnavailableError, ShippedModelError, GarmentError,
            AddressInUseError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown:
        _refuse_unknown(args, unknown)
    errors = _user_errors()
    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader that stopped early (| head) is met here, not at exit
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to say to a closed pipe
        return 141  # as a command killed by SIGPIPE
    except errors as err:
        print(f"fashion-search: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        from fashion_search.search.index.generations import is_disk_error

        if not is_disk_error(err):
            raise
        print(f"fashion-search: error: cannot write {err.filename or 'a file'}: {err.strerror}; nothing was "
              "changed (free some space, or point --index at a folder you may write)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
