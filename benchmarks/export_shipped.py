"""Save the shipped model (``fashion_lite0``) of the fashion-search being imported as a model folder,
so benchmarks can score an earlier version's shipped model beside this one (``--previous``).

    python benchmarks/export_shipped.py --earlier outputs/fashion_lite0-fused   # the model shipped before (bc03809)

``--earlier`` saves the model shipped before the tuned one, which the package keeps (the recipe
``shipped_heads``). Any other version's shipped model comes from that version's code:

    git worktree add /tmp/fashion-search-before bc03809    # the version whose model is wanted
    PYTHONPATH=/tmp/fashion-search-before python benchmarks/export_shipped.py outputs/fashion_lite0-fused

It uses only what every version with a shipped model has: its provenance, ``build_shipped`` and
``saved.save_model``. The folder's manifest is the provenance, with the keys a model folder has.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fashion_search.models import saved
from fashion_search.pipeline.finetune import SHIPPED_MODELS

PACKAGE_ONLY = (   # provenance keys a model folder's manifest does not have
    "weights_sha256", "weights_file", "weights_encoding", "made_on", "command", "trainer", "name", "dim",
    "released_as")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the model folder to write (outputs/...)")
    parser.add_argument("--earlier", action="store_true",
                        help="the model shipped before the tuned one (shipped_heads), not today's")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; name a new folder")
    read_provenance, build = SHIPPED_MODELS["shipped_heads" if args.earlier else "shipped"]
    record = read_provenance()
    manifest = {key: value for key, value in record.items() if key not in PACKAGE_ONLY}
    manifest.update(weights="imagenet", weights_sha256=record.get("backbone_weights_sha256", ""))
    saved.save_model(build(record=record), manifest, args.out)
    print(f"saved the package's {record['name']} ({record['recipe']}) as {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
