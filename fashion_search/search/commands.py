"""The search engine's commands: ``fashion-search index | query | add | remove | info | verify | serve``.

Each ``cmd_*`` takes the arguments :mod:`fashion_search.cli` parsed and returns an exit code.
A user mistake raises one of the errors :mod:`fashion_search.cli` turns into one line on
stderr and exit code 2. Nothing here imports TensorFlow: the model loads only when a command
embeds a photo.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from fashion_search.data import detect_source, list_catalogue, source_name
from fashion_search.data.catalog import Catalog
from fashion_search.data.photo_folder import find_metadata, list_photos
from fashion_search.params import ConfigError, IndexParams
from fashion_search.params_file import read_yaml
from fashion_search.params_index import parse_index, parse_milvus_uri, parse_ray_address
from fashion_search.search.embedding.garments import parse_box
from fashion_search.search.engine import SearchEngine, build_index, colour_weight_for
from fashion_search.search.index.filters import no_match_hints, shown_values
from fashion_search.search.embedding.runtime import RUNTIME_NAMES
from fashion_search.search.index.store import open_index, verify_index

SHOWN_COLUMNS = ("category", "articleType", "gender", "brand", "price", "baseColour", "product_id")


def _settings(args: argparse.Namespace) -> IndexParams:
    """The ``index`` block of the parameter file (``--params``, else ./params.yaml if present),
    with the command line's overrides."""
    path = args.params or ("params.yaml" if Path("params.yaml").is_file() else None)
    settings = parse_index(read_yaml(path).get("index")) if path else IndexParams()
    overrides = {key: getattr(args, key, None) for key in ("model", "weights", "image_size", "type", "backend", "runtime")}
    if getattr(args, "uri", None) is not None:
        overrides["uri"] = parse_milvus_uri(args.uri)
    if getattr(args, "ray", None) is not None:
        overrides["executor"] = "ray"
        if args.ray:
            overrides["ray_address"] = parse_ray_address(args.ray)
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def model_phrase(identity: dict) -> str:
    """The model of an index, for people: the shipped model says so, others name backbone and recipe."""
    if identity.get("description"):
        return f"{identity['model']} ({identity['description']})"
    return f"{identity['backbone']} ({identity['recipe']}, {identity['model']})"


def _catalogue(args: argparse.Namespace) -> Catalog:
    """The catalogue ``index`` was given: its source named by ``--layout``, or recognised."""
    source = detect_source(args.catalogue) if args.layout == "auto" else source_name(args.layout)
    path = None if args.catalogue in ("fashion-mnist", "fashion_mnist") else args.catalogue
    return list_catalogue(source, path, args.metadata, args.split)


def _report_skipped(skipped: pd.DataFrame, folder: Path) -> None:
    if len(skipped):
        reasons = skipped["reason"].str.split(" \\(").str[0].value_counts()
        summary = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        print(f"skipped {len(skipped)} photos ({summary}); listed in {folder / 'skipped.csv'}")


def cmd_index(args: argparse.Namespace) -> int:
    settings = _settings(args)
    catalog = _catalogue(args)
    started = time.perf_counter()
    index = build_index(catalog, args.index, settings, overwrite=args.overwrite)
    info = index.info()
    print(f"indexed {info['products']:,} products into {args.index} in {time.perf_counter() - started:.1f} s: "
          f"{info['kind']} ({info['factory']}, {info['metric']}), {info['dimension']}-d vectors of "
          f"{model_phrase(info['model'])}")
    _report_skipped(index.skipped, Path(args.index))
    return 0


def photo_names(paths: list[str]) -> tuple[list[str], Path | None]:
    """The result table's photo column: each path below the folder the photos share (named once
    under the table), or in full when they share none but the root."""
    given = [Path(p) for p in paths]
    folder = Path(os.path.commonpath(given)) if given and all(p.is_absolute() for p in given) else None
    if folder is not None and folder in given:  # one result: its folder, not itself
        folder = folder.parent
    if folder is not None and len(folder.parts) < 3:  # /tmp/a and /work/b: nothing worth naming in common
        folder = None
    return [str(p.relative_to(folder)) if folder else str(p) for p in given], folder


def _print_results(results: pd.DataFrame, label: str, index_info: dict) -> None:
    print(f"{label} — {index_info['products']:,} products, {index_info['kind']} index")
    if results.empty:
        print("no product matches")
        return
    metadata = [c for c in SHOWN_COLUMNS if c in results.columns]
    table = results[["rank", "id", "distance", *[c for c in ("score",) if c in results.columns], *metadata,
                     "colours"]].copy()
    for column in metadata:
        table[column] = shown_values(table[column])  # as a filter names them: 12 not 12.0, "unknown" if missing
    table["photo"], folder = photo_names([str(p) for p in results["path"]])
    print(table.to_string(index=False))
    if folder is not None:
        print(f"photos in {folder}")


def garments_json(query) -> dict:
    """The garments found in a query photo and the one searched, for ``--json`` (nothing for other queries)."""
    if query.garment is None:
        return {}
    searched = next((i for i, g in enumerate(query.garments, 1) if g is query.garment), None)
    return {"garments": [g.describe() for g in query.garments], "garment": searched,
            "searched": query.garment.describe()}


def _print_garments(query) -> None:
    """Which garment of the photo is searched, and how to pick another."""
    if query.garment is None:
        return
    if query.garment.group == "whole photo":
        if query.garments:  # the localiser ran
            print("searching the whole photo (it looks like a catalogue photo, on a plain light background, or no "
                  "garment stands out); search a part of it with --box x0,y0,x1,y1")
        return
    if query.garment.group == "drawn box":
        print(f"searching the box {list(query.garment.box)} of the photo")
        return
    number = next(i for i, g in enumerate(query.garments, 1) if g is query.garment)
    listed = ", ".join(f"{i} {g.group} at {list(g.box)}" for i, g in enumerate(query.garments, 1))
    print(f"found {len(query.garments)} garment{'s' if len(query.garments) > 1 else ''} in the photo ({listed}); "
          f"searching {number}" + ("; pick another with --garment N" if len(query.garments) > 1 else ""))


def cmd_query(args: argparse.Namespace) -> int:
    given = [x for x in (args.photo, args.like) if x]
    if len(given) > 1 or not (given or args.colour):
        raise ConfigError("give one of: a photo, --like PRODUCT_ID, or --colour COLOUR")
    if not args.photo and (args.garment is not None or args.box or args.whole_photo):
        raise ConfigError("--garment, --box and --whole-photo choose what of a query photo to search; give a photo")
    box = parse_box(args.box) if args.box else None
    engine = SearchEngine.open(args.index, _settings(args), model=args.model)
    if args.photo:
        query = engine.photo_query(args.photo, args.garment, box, localise=not args.whole_photo)
    elif args.like:
        query = engine.product_query(args.like)
    else:
        query = engine.colour_query(args.colour)
    swatch = args.colour if query.vector is not None else None
    weight = colour_weight_for(args.colour_weight, swatch)
    results = engine.search(query, args.top_k, args.filter, colour_weight=weight, swatch=swatch,
                            match_colour=args.match_colour)
    if args.json:
        print(json.dumps({"query": query.label, "index": str(args.index), "filters": args.filter,
                          "colour_weight": weight, **garments_json(query),
                          "results": json.loads(results.to_json(orient="records"))}, indent=2))
    else:
        _print_garments(query)
        _print_results(results, query.label, engine.index.info())
    if results.empty:
        for hint in no_match_hints(args.filter, engine.index.products, engine.index.live):
            print(hint, file=sys.stderr)
    if args.contact_sheet:
        from fashion_search.search.contact_sheet import save_contact_sheet

        path = save_contact_sheet(results, query.path, args.contact_sheet)
        print(f"contact sheet: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    engine = SearchEngine.open(args.index, _settings(args))
    catalog = list_photos(args.photos, args.metadata)
    csv_given = args.metadata is not None or any(find_metadata(Path(p)) for p in args.photos if Path(p).is_dir())
    added = engine.add(catalog, new_columns=csv_given)
    print(f"added {added.photos:,} photo{'' if added.photos == 1 else 's'} to {args.index} ({added.new_products:+,} "
          f"products, {added.replaced:,} replaced; {int(engine.index.live.sum()):,} in all)")
    _report_skipped(added.skipped, Path(args.index))
    if added.photos == 0 and len(added.skipped):
        print(f"fashion-search: error: none of the {len(added.skipped):,} photos could be added; the reasons are in "
              f"{Path(args.index) / 'skipped.csv'}", file=sys.stderr)
        return 2
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
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
    print(f"kind       {info['kind']} ({info['factory']}, {info['metric']}), chosen at its last build or compaction: "
          f"{info['chosen_because']}")
    if info["milvus"]:
        print(f"milvus     collection {info['milvus']['collection']} at {info['milvus']['uri']}")
    print(f"model      {model_phrase(model)}, {model['image_size']} px, {info['dimension']}-d, "
          f"weights sha256 {model['weights_sha256'][:12]}")
    print(f"filters    {', '.join(info['filters'])}")
    print(f"debris     {info['debris_files']:,} files, {info['debris_bytes'] / 2**20:.1f} MiB no generation uses "
          "(removed by the next change, or 'fashion-search compact')")
    print(f"checksums  {'recorded for ' + ', '.join(info['checksummed']) if info['checksummed'] else 'none recorded'}"
          " ('fashion-search verify' checks them)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    checked = verify_index(args.index)
    unrecorded = f"; no checksum recorded for {', '.join(checked['unrecorded'])}" if checked["unrecorded"] else ""
    if not checked["sealed"]:
        unrecorded += "; the manifest is unsealed (format 1: its next change seals it)"
    print(f"{args.index}: intact: {len(checked['files'])} files ({checked['bytes'] / 2**20:,.1f} MiB) match the "
          f"checksums written with them, {checked['rows']:,} rows of finite vectors and colours{unrecorded} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    engine = SearchEngine.open(args.index, _settings(args))
    before = engine.index.info()
    engine.compact()
    after = engine.index.info()
    print(f"compacted {args.index}: {before['removed_rows']:,} removed rows dropped, {after['products']:,} products, "
          f"{after['kind']} ({after['factory']}); {before['debris_bytes'] / 2**20:.1f} MiB of debris removed")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fashion_search.search.serving.connections import server_config
    from fashion_search.search.serving.listening import listening_socket
    from fashion_search.search.serving.server import API_KEY_ENV, create_app

    listener = listening_socket(args.host, args.port)  # a port in use is said before the model loads
    engine = SearchEngine.open(args.index, _settings(args))
    runtime = engine.embedder.ready()  # load the model now, not on the first request
    api_key = os.environ.get(API_KEY_ENV) or None
    app = create_app(engine, api_key, int(args.max_upload_mb * 2**20), args.max_upload_pixels,
                     max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    print(f"serving {args.index} ({int(engine.index.live.sum()):,} products, model on {RUNTIME_NAMES[runtime]}) on "
          f"http://{args.host}:{args.port}/ "
          f"({'writes need X-API-Key' if api_key else f'read-only: set {API_KEY_ENV} to allow writes'})", flush=True)
    uvicorn.Server(server_config(app, args.host, args.port, max_connections=args.max_connections)).run([listener])
    return 0
