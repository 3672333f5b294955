"""The one-process indexer against Ray, side by side in one run, and a two-node Ray cluster for
correctness.

    python benchmarks/ray_indexing.py [--photos ../shared/data/fashion-products-dev] [--repeats 2]

Measures, on this machine, with the model ``index.model`` names (the shipped one by default):

1. embedding the catalogue for an index (decode, frame, colour, model), timed in this process:
   one process against Ray on this machine (started once, as a cluster would be running), the
   two alternated ``--repeats`` times; photos/s of each and their ratio; the largest difference
   between their vectors;
2. ``fashion-search index`` and ``fashion-search index --ray`` end to end, each in its own
   process (Ray started by the command itself): wall seconds;
3. a two-node cluster on this machine (``ray start --head`` and a second ``ray start``, one CPU
   each): ``index --ray <address>`` into faiss, its vectors against the one-process index's.

Writes benchmarks/results/ray_indexing.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fashion_search.data.photo_folder import list_photo_folder
from fashion_search.io import write_results
from fashion_search.models.shipped import cpu_name
from fashion_search.params import IndexParams
from fashion_search.search.embedding.embedder import load_embedder
from fashion_search.search.embedding.embedding_jobs import embed_into_items

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def in_process(photos: Path, repeats: int, work: Path, first: int) -> dict:
    """Embedding for an index, one process against Ray (already running), alternated, on the first
    ``first`` photos and on all of them: each path's fixed cost and photos/s follow from the two."""
    import ray

    settings = IndexParams()
    embedder = load_embedder(settings)
    catalog = list_photo_folder(photos)
    head = dataclasses.replace(catalog, items=catalog.items.iloc[:first], images=catalog.images[:first])
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    seconds: dict[tuple[str, int], list[float]] = {}
    vectors = {}
    try:
        for repeat in range(repeats):
            for part in (head, catalog):
                for executor in ("local", "ray"):
                    started = time.perf_counter()
                    done = embed_into_items(embedder, part, work / f"{executor}-{len(part.items)}-{repeat}",
                                            IndexParams(executor=executor), executor)
                    seconds.setdefault((executor, len(part.items)), []).append(time.perf_counter() - started)
                    vectors[executor] = done.vectors
    finally:
        ray.shutdown()
    n, paths = len(catalog.items), {}
    for executor in ("local", "ray"):
        short, whole = (float(np.median(seconds[(executor, size)])) for size in (first, n))
        rate = (n - first) / (whole - short)
        paths[executor] = {"seconds_first": round(short, 2), "seconds_all": round(whole, 2),
                           "photos_per_s_all": round(n / whole, 1), "photos_per_s_beyond_first": round(rate, 1),
                           "fixed_s": round(short - first / rate, 2), "runs_all_s": [round(t, 2) for t in seconds[(executor, n)]]}
    local, on_ray = paths["local"], paths["ray"]
    # catalogue size from which Ray keeps 85% of one process's speed: a_l + n/r_l >= 0.85 (a_r + n/r_r)
    gain = 1 / local["photos_per_s_beyond_first"] - 0.85 / on_ray["photos_per_s_beyond_first"]
    break_even = (0.85 * on_ray["fixed_s"] - local["fixed_s"]) / gain if gain > 0 else None
    return {"photos": n, "first": first, "model": embedder.identity["model"], "local": local, "ray": on_ray,
            "ray_over_local_all": round(on_ray["photos_per_s_all"] / local["photos_per_s_all"], 3),
            "ray_over_local_beyond_first": round(on_ray["photos_per_s_beyond_first"] / local["photos_per_s_beyond_first"], 3),
            "photos_for_85_percent": None if break_even is None else max(0, round(break_even)),
            "max_abs_difference": float(np.abs(vectors["local"] - vectors["ray"]).max())}


def index_command(photos: Path, folder: Path, *extra: str, env: dict | None = None) -> float:
    """``fashion-search index`` in its own process: wall seconds."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "fashion-search"), "index", str(photos), "--index", str(folder), *extra],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"fashion-search index {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
    return round(time.perf_counter() - started, 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(photos: Path, work: Path, reference: Path) -> dict:
    """``index --ray`` on a head and a second node of this machine (one CPU each)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a throw-away cluster on loopback
    port = free_port()
    ray = str(BIN / "ray")
    subprocess.run([ray, "start", "--head", "--num-cpus", "1", "--port", str(port), "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env)
    try:
        subprocess.run([ray, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--disable-usage-stats"],
                       check=True, capture_output=True, env=env)
        nodes = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='auto', logging_level=40); "
                                "print(sum(n['Alive'] for n in ray.nodes()))"], capture_output=True, text=True,
                               env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}).stdout.strip()
        seconds = index_command(photos, work / "cluster", "--ray", f"127.0.0.1:{port}", env=env)
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)
    a, b = (np.fromfile(folder / "vectors.f32", np.float32) for folder in (reference, work / "cluster"))
    return {"nodes": int(nodes or 0), "seconds": seconds, "same_length": a.shape == b.shape,
            "max_abs_difference": float(np.abs(a - b).max()) if a.shape == b.shape else None,
            "same_skipped": (reference / "skipped.csv").read_bytes() == (work / "cluster" / "skipped.csv").read_bytes()}


def markdown(report: dict) -> str:
    side, cli, cluster = report["in_process"], report["commands"], report["two_nodes"]
    local, on_ray = side["local"], side["ray"]
    lines = [
        "# Indexing on Ray against one process", "",
        f"`python benchmarks/ray_indexing.py` on {report['machine']}; model {side['model']}.", "",
        f"Embedding for an index in one process, Ray already running on this machine (as a cluster would be), the "
        f"two alternated, median of {report['repeats']} runs each on the first {side['first']} dev photos and on all "
        f"{side['photos']:,}; the fixed cost and the speed beyond it follow from the two:", "",
        "| | one process | Ray | Ray / one process |", "|---|---|---|---|",
        f"| all {side['photos']:,} photos (s) | {local['seconds_all']} | {on_ray['seconds_all']} | |",
        f"| photos/s over all of them | {local['photos_per_s_all']} | {on_ray['photos_per_s_all']} | "
        f"{side['ray_over_local_all']:.0%} |",
        f"| photos/s beyond the first {side['first']} | {local['photos_per_s_beyond_first']} | "
        f"{on_ray['photos_per_s_beyond_first']} | {side['ray_over_local_beyond_first']:.0%} |",
        f"| fixed cost of a job (s) | {local['fixed_s']} | {on_ray['fixed_s']} | |", "",
        "The split into a fixed cost and a speed beyond it is a straight line through two points: Ray "
        "decodes a chunk (512 photos) per task, so the short job is one task and the split is rough.", "",
        f"Ray keeps 85% of one process's speed from about {side['photos_for_85_percent']:,} photos a job on "
        if side["photos_for_85_percent"] is not None else "Ray stays below 85% of one process's speed on ",
        "this machine. Largest difference between the two paths' vectors: "
        f"{side['max_abs_difference']:.2g}.", "",
        "`fashion-search index` end to end, each in its own process, Ray started by the command itself:", "",
        "| catalogue | photos | one process (s) | `--ray` (s) | speed, Ray / one process |", "|---|---|---|---|---|"]
    for row in cli:
        lines.append(f"| {row['catalogue']} | {row['photos']:,} | {row['local_s']} | {row['ray_s']} | "
                     f"{row['local_s'] / row['ray_s']:.0%} |")
    lines += ["", f"Two-node cluster on this machine (`ray start --head` + a second `ray start`, one CPU each; "
              f"{cluster['nodes']} nodes alive): `index --ray` took {cluster['seconds']} s; vectors against the "
              f"one-process index: largest difference {cluster['max_abs_difference']}, same skipped list: "
              f"{cluster['same_skipped']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent.parent / "shared" / "data"
    parser.add_argument("--photos", default=str(shared / "fashion-products-dev"))
    parser.add_argument("--large", help="also index this larger folder end to end both ways (e.g. "
                                        "../shared/data/fashion-products-small)")
    parser.add_argument("--first", type=int, default=512, help="photos of the short job")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "ray_indexing"), help="results stem (.json, .md)")
    args = parser.parse_args()
    photos = Path(args.photos)
    work = Path(tempfile.mkdtemp(prefix="ray-indexing-"))
    try:
        side = in_process(photos, args.repeats, work, args.first)
        commands = []
        for folder in [photos] + ([Path(args.large)] if args.large else []):
            name = folder.name
            commands.append({"catalogue": name, "photos": len(list_photo_folder(folder).items),
                             "local_s": index_command(folder, work / f"local-{name}"),
                             "ray_s": index_command(folder, work / f"ray-{name}", "--ray")})
        cluster = two_nodes(photos, work, work / f"local-{photos.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "repeats": args.repeats, "in_process": side, "commands": commands, "two_nodes": cluster}
    write_results(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
