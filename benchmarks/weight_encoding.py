"""How coarse the shipped model's stored weights may be: file size against validation quality.

A tuned model folder (what ``make shipped-model`` trains) is stored as :func:`fashion_search.models.shipped.ship`
stores it, with the steps given (in standard deviations: the top layers' change from ImageNet per
output channel, the head kernels per column), read back, and scored on the tuned trainer's
validation queries (494 dev photos searching the 1,480-photo validation half; never the test half),
beside the folder's own float32 model.

    make shipped-model   # trains outputs/tuned/model (about 50 minutes on 2 cores)
    python benchmarks/weight_encoding.py outputs/tuned/model --top-steps 0.5,0.8,1.0 --head-steps 0.4,0.6,0.8

Any model folder of the tuned recipe will do, e.g. one made by ``benchmarks/export_shipped.py``.

Writes benchmarks/results/weight_encoding.{json,md}.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from validation_models import scores   # the same scoring as the other validation benchmark (beside this file)

from fashion_search.io import write_results
from fashion_search.models import saved, shipped
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.models.tuned_photos import choosing_photos
from fashion_search.models.weight_codec import decoded, save_arrays
from fashion_search.params import IndexParams
from fashion_search.pipeline.tables import markdown_table
from fashion_search.search.embedding.embedder import embed_photos, load_embedder

ROOT = Path(__file__).resolve().parent
MEASURES = ("type report", "type min(k,R)", "type+colour report", "type+colour min(k,R)")


def floats(text: str) -> list[float]:
    """``0.5,0.8`` → [0.5, 0.8]."""
    return [float(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_folder", type=Path)
    parser.add_argument("--top-steps", type=floats, default=[0.5, 0.8, 1.0])
    parser.add_argument("--head-steps", type=floats, default=[0.4, 0.6, 0.8])
    parser.add_argument("--dev", type=Path, default=ROOT.parent.parent / "shared/data/fashion-products-dev")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--label", default="float32 (the model folder)", help="what the model folder's own weights are")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "weight_encoding")
    args = parser.parse_args(argv)
    manifest = saved.read_manifest(args.model_folder)
    photos, queries = choosing_photos(args.dev, args.seed)
    paths = [str(path) for path in photos.paths]
    embedder = load_embedder(IndexParams(model=str(args.model_folder), runtime="tensorflow"))
    model, backbone = embedder.model, shipped.backbone_of(embedder.model)
    imagenet, _ = build_feature_extractor(manifest["backbone"], "imagenet", manifest["image_size"])
    original = model.get_weights()
    layers = {name: backbone.get_layer(name) for name in manifest["top_layers"]}
    layers |= {head: model.get_layer(head) for head in shipped.HEADS}

    def row(label: str, top_step: float | None, head_step: float | None, size: int | None) -> dict:
        found = scores(embed_photos(embedder, paths, 32).vectors, photos.items, queries)
        print(label, found, flush=True)
        return {"weights": label, "top step": top_step, "head step": head_step,
                "file MB": round(size / 1e6, 3) if size else None, **found}

    rows = [row(args.label, None, None, None)]
    with tempfile.TemporaryDirectory() as folder:
        for top_step in args.top_steps:
            for head_step in args.head_steps:
                model.set_weights(original)
                arrays = {**shipped.top_arrays(model, manifest["top_layers"], imagenet, top_step),
                          **shipped.head_arrays(model, head_step)}
                path = Path(folder) / "weights.npz"
                save_arrays(path, arrays)
                arrays = dict(np.load(path))   # read back, as the engine reads the shipped file
                for name, layer in layers.items():
                    prefix = f"{shipped.TOP}/{name}" if name in manifest["top_layers"] else name
                    starts = imagenet.get_layer(name).get_weights() if prefix.startswith(shipped.TOP) else None
                    layer.set_weights([decoded(arrays, f"{prefix}/{i}", starts[i] if starts else None)
                                       for i in range(len(layer.get_weights()))])
                rows.append(row(f"int8 steps {top_step} / {head_step}", top_step, head_step, path.stat().st_size))
    chosen = (shipped.TOP_STEP, shipped.HEAD_STEP)
    table = markdown_table(pd.DataFrame(rows).astype(object).fillna("–"))
    markdown = (f"# Stored weights: size against validation quality\n\n`python benchmarks/weight_encoding.py "
                f"{args.model_folder}` on {shipped.cpu_name()} ({platform.machine()}). Validation: "
                f"{len(queries)} dev photos searching {len(paths):,} (mAP@10). Shipped: steps {chosen[0]} / "
                f"{chosen[1]}.\n\n{table}\n")
    write_results(args.out, {"model_folder": str(args.model_folder), "shipped_steps": chosen, "rows": rows},
                  markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
