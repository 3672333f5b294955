"""``fashion-search index | query | add | remove | info | serve``: the search engine from the shell.

A user mistake (a photo that cannot be read, no index, an index built by another model, an
unknown filter key...) prints one line on stderr and exits with 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fashion_search.catalog import Catalog, DatasetNotFoundError  # noqa: E402
from fashion_search.colour import ColourError  # noqa: E402
from fashion_search.config import INDEX_TYPES, ConfigError, IndexParams, parse_index, read_yaml  # noqa: E402
from fashion_search.embedder import ModelError  # noqa: E402
from fashion_search.filters import FilterError  # noqa: E402
from fashion_search.images import PHOTO_SUFFIXES, UnusableImageError  # noqa: E402
from fashion_search.product_index import ProductIndexError, open_index  # noqa: E402

DEFAULT_INDEX = "outputs/index"
USER_ERRORS = (ConfigError, DatasetNotFoundError, ModelError, FilterError, UnusableImageError, ProductIndexError,
               ColourError)
SHOWN_COLUMNS = ("category", "articleType", "gender", "brand", "price", "baseColour", "product_id")


def _settings(args: argparse.Namespace) -> IndexParams:
    """The ``index`` block of the parameter file (``--params``, else ./params.yaml if present),
    with the command line's overrides."""
    path = args.params or ("params.yaml" if Path("params.yaml").is_file() else None)
    settings = parse_index(read_yaml(path).get("index")) if path else IndexParams()
    overrides = {key: getattr(args, key, None) for key in ("model", "weights", "image_size", "type")}
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _catalogue(source: str, layout: str, metadata: str | None, split: str) -> Catalog:
    from fashion_search import sources

    if source == "fashion-mnist" or layout == "fashion-mnist":
        return sources.list_fashion_mnist(None if source == "fashion-mnist" else source, split)
    folder = Path(source)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{source} is not a folder of photos (or 'fashion-mnist')")
    if layout == "farfetch" or (layout == "auto" and (folder / sources.FARFETCH_LISTINGS).is_file()):
        return sources.list_farfetch(folder)
    return sources.list_photo_folder(folder, metadata)


def _photos(paths: list[str], metadata: str | None) -> Catalog:
    """Photos and folders named on the command line, as one catalogue."""
    from fashion_search.sources import list_photo_folder, read_metadata

    parts, loose = [], []
    for given in map(Path, paths):
        if given.is_dir():
            parts.append(list_photo_folder(given, metadata))
        elif given.suffix.lower() in PHOTO_SUFFIXES or given.is_file():
            loose.append(given)
        else:
            raise DatasetNotFoundError(f"{given} is neither a photo nor a folder")
    if loose:
        items = pd.DataFrame({"id": [p.stem for p in loose], "path": [str(p) for p in loose]})
        if metadata:
            items = items.merge(read_metadata(metadata), on="id", how="left")
        items["split"] = "test"
        parts.append(Catalog(items, items["path"].to_numpy(str)))
    items = pd.concat([p.items for p in parts], ignore_index=True)
    skipped = pd.concat([p.skipped for p in parts], ignore_index=True)
    return Catalog(items, np.concatenate([p.images for p in parts]), skipped=skipped)


def _report_skipped(skipped: pd.DataFrame, folder: Path) -> None:
    if len(skipped):
        reasons = skipped["reason"].str.split(" \\(").str[0].value_counts()
        summary = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        print(f"skipped {len(skipped)} photos ({summary}); listed in {folder / 'skipped.csv'}")


# ----------------------------------------------------------------------------- commands
def cmd_index(args: argparse.Namespace) -> int:
    from fashion_search.search import build_index

    settings = _settings(args)
    catalog = _catalogue(args.catalogue, args.layout, args.metadata, args.split)
    started = time.perf_counter()
    index = build_index(catalog, args.index, settings, overwrite=args.overwrite)
    info = index.info()
    print(f"indexed {info['products']:,} products into {args.index} in {time.perf_counter() - started:.1f} s: "
          f"{info['kind']} ({info['factory']}, {info['metric']}), {info['dimension']}-d vectors of "
          f"{info['model']['backbone']} ({info['model']['recipe']})")
    _report_skipped(index.skipped, Path(args.index))
    return 0


def _print_results(results: pd.DataFrame, label: str, index_info: dict) -> None:
    print(f"{label} — {index_info['products']:,} products, {index_info['kind']} index")
    if results.empty:
        print("no product matches")
        return
    columns = ["rank", "id", "distance", *[c for c in ("score",) if c in results.columns],
               *[c for c in SHOWN_COLUMNS if c in results.columns], "colours", "path"]
    print(results[columns].to_string(index=False))


def cmd_query(args: argparse.Namespace) -> int:
    from fashion_search.search import SearchEngine

    given = [x for x in (args.photo, args.like) if x]
    if len(given) > 1 or not (given or args.colour):
        raise ConfigError("give one of: a photo, --like PRODUCT_ID, or --colour COLOUR")
    engine = SearchEngine.open(args.index, _settings(args), model=args.model)
    if args.photo:
        query = engine.photo_query(args.photo)
    elif args.like:
        query = engine.product_query(args.like)
    else:
        query = engine.colour_query(args.colour)
    swatch = args.colour if query.vector is not None else None
    weight = args.colour_weight if args.colour_weight is not None else (0.5 if swatch else 0.0)
    results = engine.search(query, args.top_k, args.filter, colour_weight=weight, swatch=swatch)
    if args.json:
        print(json.dumps({"query": query.label, "index": str(args.index), "filters": args.filter,
                          "colour_weight": weight, "results": json.loads(results.to_json(orient="records"))},
                         indent=2))
    else:
        _print_results(results, query.label, engine.index.info())
    if args.contact_sheet:
        from fashion_search.contact_sheet import save_contact_sheet

        path = save_contact_sheet(results, query.label, query.path, args.contact_sheet)
        print(f"contact sheet: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from fashion_search.search import SearchEngine

    engine = SearchEngine.open(args.index, _settings(args))
    catalog = _photos(args.photos, args.metadata)
    before = int(engine.index.live.sum())
    skipped = engine.add(catalog)
    after = int(engine.index.live.sum())
    print(f"added {len(catalog) - len(skipped):,} photos to {args.index} ({after - before:+,} products; "
          f"{after:,} in all)")
    _report_skipped(skipped, Path(args.index))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from fashion_search.search import SearchEngine

    engine = SearchEngine.open(args.index, _settings(args))
    engine.remove(args.ids)
    print(f"removed {len(args.ids)} products from {args.index}; {int(engine.index.live.sum()):,} remain")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = open_index(args.index, _settings(args)).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    model = info["model"]
    print(f"index      {info['folder']} (generation {info['generation']}, updated {info['updated']})")
    print(f"products   {info['products']:,} ({info['removed_rows']:,} removed rows, {info['skipped_photos']:,} "
          "photos skipped)")
    print(f"kind       {info['kind']} ({info['factory']}, {info['metric']}): {info['chosen_because']}")
    print(f"model      {model['backbone']} {model['recipe']}, {model['image_size']} px, {info['dimension']}-d, "
          f"weights sha256 {model['weights_sha256'][:12]} ({model['model']})")
    print(f"filters    {', '.join(c for c in info['columns'] if c not in ('path', 'colours'))}, colour")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fashion_search.search import SearchEngine
    from fashion_search.server import API_KEY_ENV, create_app

    engine = SearchEngine.open(args.index, _settings(args))
    engine.embedder  # load the model now, not on the first request
    api_key = os.environ.get(API_KEY_ENV) or None
    app = create_app(engine, api_key, int(args.max_upload_mb * 2**20))
    print(f"serving {args.index} ({int(engine.index.live.sum()):,} products) on http://{args.host}:{args.port}/ "
          f"({'writes need X-API-Key' if api_key else f'read-only: set {API_KEY_ENV} to allow writes'})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


# ----------------------------------------------------------------------------- parser
def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", default=DEFAULT_INDEX, help=f"index folder (default {DEFAULT_INDEX})")
    parser.add_argument("--params", help="parameter file whose 'index' block to use (default ./params.yaml if present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fashion-search", description="Fashion image search engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="build an index of a catalogue")
    index.add_argument("catalogue", help="a folder of photos (with optional labels.csv / metadata.csv), a Farfetch "
                                         "listings folder, or 'fashion-mnist'")
    _common(index)
    index.add_argument("--layout", choices=("auto", "folder", "farfetch", "fashion-mnist"), default="auto")
    index.add_argument("--metadata", help="metadata CSV with an 'id' column (default: labels.csv or metadata.csv)")
    index.add_argument("--split", choices=("train", "test", "all"), default="test", help="Fashion-MNIST images to index")
    index.add_argument("--model", help="backbone name or trained model folder (default: index.model)")
    index.add_argument("--weights", choices=("imagenet", "none"))
    index.add_argument("--image-size", type=int)
    index.add_argument("--type", choices=INDEX_TYPES, help="index kind (default: index.type)")
    index.add_argument("--overwrite", action="store_true", help="replace an existing index")
    index.set_defaults(run=cmd_index)

    query = commands.add_parser("query", help="search the index")
    query.add_argument("photo", nargs="?", help="query photo")
    _common(query)
    query.add_argument("--like", metavar="PRODUCT_ID", help="more like this catalogue product (itself excluded)")
    query.add_argument("--colour", "--color", help="a colour name or #rrggbb: alone, search by swatch; with a photo, "
                                                   "prefer that colour")
    query.add_argument("--colour-weight", type=float, help="0..1: blend of colour closeness into the order")
    query.add_argument("--top-k", type=int, default=10)
    query.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                       help="category=shoes, brand=a,b, price=50..200, colour=red; repeat to combine")
    query.add_argument("--json", action="store_true", help="results as JSON")
    query.add_argument("--contact-sheet", metavar="PNG", help="also draw the results into this PNG")
    query.add_argument("--model", help="refuse unless the index was built with this model")
    query.set_defaults(run=cmd_query)

    add = commands.add_parser("add", help="add photos to the index (an id already there is replaced)")
    add.add_argument("photos", nargs="+", help="photos and folders")
    _common(add)
    add.add_argument("--metadata", help="metadata CSV with an 'id' column")
    add.set_defaults(run=cmd_add)

    remove = commands.add_parser("remove", help="remove products from the index")
    remove.add_argument("ids", nargs="+")
    _common(remove)
    remove.set_defaults(run=cmd_remove)

    serve = commands.add_parser("serve", help="the HTTP API and web page over an index")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-upload-mb", type=float, default=10.0)
    serve.set_defaults(run=cmd_serve)

    info = commands.add_parser("info", help="describe the index")
    _common(info)
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "top_k", 1) < 1:
        build_parser().error("--top-k must be at least 1")
    if not 0.0 <= (getattr(args, "colour_weight", None) or 0.0) <= 1.0:
        build_parser().error("--colour-weight must lie in 0..1")
    try:
        return args.run(args)
    except USER_ERRORS as err:
        print(f"fashion-search: error: {err}", file=sys.stderr)
        return 2
