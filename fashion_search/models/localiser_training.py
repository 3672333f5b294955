"""Training the garment localiser's heads on made shopper photos: ``make localiser``.

Cut-outs come from ``fashion-products-small`` and two thirds of the dev photos' validation half;
the last third of that half, pasted on the validation backgrounds, chooses the epoch. The dev
photos' test half and the benchmark backgrounds are never seen here. Each made photo is
described once by the frozen backbone, so the epochs train the heads alone, on cached maps: one
head from each seed of ``--head-seeds``, on the same photos.

    python -m fashion_search.models.localiser_training --small ../shared/data/fashion-products-small \\
        --dev ../shared/data/fashion-products-dev
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion_search.data import evaluation_split
from fashion_search.data.backgrounds import ROLES, background_crop, load_backgrounds, made_background
from fashion_search.data.cutouts import GROUPS, Cutout, read_cutouts
from fashion_search.data.shopper_photos import Conditions, compose
from fashion_search.images import fit_to_square
from fashion_search.io import file_sha256, read_json, write_json, write_text_atomic
from fashion_search.models import localiser
from fashion_search.progress import progress

SHIPPED = localiser.SHIPPED_HEAD
HASH_MODULE = Path(__file__).with_name("localiser_sha256.py")  # the shipped head's SHA-256, as code
CELL = localiser.SIZE // localiser.CELLS
SPLIT_SEED = 42  # the dev photos' halves (as every benchmark splits them) and the validation half's thirds


def cutouts_of(root: Path, labels: pd.DataFrame, title: str) -> list[Cutout]:
    """The usable cut-outs of the rows of a ``labels.csv`` under ``root`` (photos ``images/<id>.jpg``)."""
    paths = [root / "images" / f"{item_id}.jpg" for item_id in labels["id"]]
    return list(read_cutouts(labels["id"].tolist(), paths, labels["subCategory"].tolist(), title).values())


def dev_thirds(dev: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dev photos' validation half, split into a training two thirds and a choosing third, always
    by :data:`SPLIT_SEED`: no other seed may move a choosing or a test photo into training."""
    labels = pd.read_csv(dev / "labels.csv", dtype={"id": str})
    halves = evaluation_split(labels["articleType"].to_numpy(), 0.5, SPLIT_SEED)
    validation = labels[halves == "validation"].sample(frac=1.0, random_state=SPLIT_SEED)
    cut = len(validation) * 2 // 3
    return validation.iloc[:cut], validation.iloc[cut:]


def framed_labels(groups: np.ndarray, size: int = localiser.SIZE) -> np.ndarray:
    """A label map framed as :func:`~fashion_search.images.fit_to_square` frames its photo (padding: 0)."""
    height, width = groups.shape
    scale = size / max(height, width)
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    page = Image.new("L", (size, size))
    page.paste(Image.fromarray(groups.astype(np.uint8)).resize(fitted, Image.NEAREST),
               ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
    return np.asarray(page, np.int64)


def made_photo(rng: np.random.Generator, cutouts: list[Cutout], backgrounds: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """One training photo, framed as the engine frames a query, and its per-cell class shares ``(CELLS, CELLS, C)``."""
    size = localiser.SIZE
    roll = rng.random()
    if roll < 0.15:
        background = None  # a catalogue-like photo on white: the localiser must keep the product whole
    elif roll < 0.35:
        background = made_background(rng, size)
    else:
        background = background_crop(rng, backgrounds[rng.integers(len(backgrounds))], size)
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    chosen = [cutouts[i] for i in rng.choice(len(cutouts), count, replace=False)]
    conditions = Conditions(placed=rng.random() < 0.85, background=background is not None,
                            cast=rng.random() < 0.6, camera=rng.random() < 0.7)
    photo = compose(rng, chosen, background, size, conditions)
    pixels, groups = photo.pixels, photo.group_map()
    if rng.random() < 0.3:  # a photo of another shape, padded with white like every query
        width = int(size * rng.uniform(0.55, 0.9))
        left = int(rng.integers(0, size - width + 1))
        pixels, groups = fit_to_square(pixels[:, left:left + width], size), framed_labels(groups[:, left:left + width])
    shares = np.eye(localiser.CLASSES, dtype=np.float32)[groups].reshape(
        localiser.CELLS, CELL, localiser.CELLS, CELL, -1).mean(axis=(1, 3))
    return pixels, shares


def made_set(rng: np.random.Generator, cutouts: list[Cutout], backgrounds: list[np.ndarray], count: int,
             extractor, title: str) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` made photos described by the frozen backbone: its maps (float16, written in place:
    a set of 16,000 photos holds 4.6 GB) and the targets."""
    from fashion_search.backbone_specs import get_spec

    preprocess = get_spec(localiser.BACKBONE).preprocess
    maps = [np.zeros((count, *shape[1:]), np.float16) for shape in (tuple(o.shape) for o in extractor.outputs)]
    targets = np.zeros((count, localiser.CELLS, localiser.CELLS, localiser.CLASSES), np.float32)
    batch = 64
    for start in progress(range(0, count, batch), title, "batch"):
        made = [made_photo(rng, cutouts, backgrounds) for _ in range(min(batch, count - start))]
        pixels = np.stack([m[0] for m in made]).astype(np.float32)
        for store, array in zip(maps, extractor.predict_on_batch(preprocess(pixels))):
            store[start:start + len(made)] = np.asarray(array, np.float16)
        targets[start:start + len(made)] = np.stack([m[1] for m in made])
    return maps, targets


def batches(maps: list[np.ndarray], targets: np.ndarray, size: int, seed: int | None):
    """The cached maps in float32 batches, shuffled each epoch when ``seed`` is given (the float16
    cache is never copied whole)."""
    import keras

    class CachedMaps(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = np.arange(len(targets))
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self) -> int:
            return -(-len(targets) // size)

        def __getitem__(self, i: int):
            rows = np.sort(self.order[i * size:(i + 1) * size])
            return tuple(m[rows].astype(np.float32) for m in maps), targets[rows]

        def on_epoch_end(self) -> None:
            if seed is not None:
                self.rng.shuffle(self.order)

    return CachedMaps()


def train(args: argparse.Namespace) -> dict:
    """Make the photos, train a head from each seed (each kept at its epoch of lowest choosing loss); the record."""
    import keras

    started = time.time()
    rng = np.random.default_rng(args.seed)
    small = pd.read_csv(args.small / "labels.csv", dtype={"id": str}).sample(args.small_photos, random_state=args.seed)
    dev_train, dev_choose = dev_thirds(args.dev)
    training_cutouts = [*cutouts_of(args.small, small, "small cut-outs"),
                        *cutouts_of(args.dev, dev_train, "dev cut-outs")]
    choosing_cutouts = cutouts_of(args.dev, dev_choose, "choosing cut-outs")
    extractor = localiser.feature_extractor()
    backgrounds = load_backgrounds("train")
    train_maps, train_targets = made_set(rng, training_cutouts, backgrounds, args.photos, extractor, "training photos")
    choose_maps, choose_targets = made_set(rng, choosing_cutouts, load_backgrounds("validation"), args.photos // 8,
                                           extractor, "choosing photos")
    heads, records = [], []
    for k, seed in enumerate(args.head_seeds):
        keras.utils.set_random_seed(seed)
        head = localiser.build_head([(None, *m.shape[1:]) for m in train_maps], seed, f"localiser_head_{k}",
                                    args.width, args.fine_width)
        head.compile(keras.optimizers.Adam(args.learning_rate),
                     keras.losses.CategoricalCrossentropy(from_logits=True))
        best = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
        history = head.fit(batches(train_maps, train_targets, 64, seed),
                           validation_data=batches(choose_maps, choose_targets, 64, None),
                           epochs=args.epochs, callbacks=[best], verbose=2)
        losses = history.history["val_loss"]
        heads.append(head)
        records.append({"seed": seed, "best_epoch": int(np.argmin(losses)) + 1,
                        "choosing_loss": round(float(min(losses)), 4), "epochs_run": len(losses)})
    localiser.save_heads(heads, args.out)
    return {"backbone": localiser.BACKBONE, "size": localiser.SIZE, "groups": list(GROUPS),
            "training_photos": args.photos, "small_photos": args.small_photos,
            "training_cutouts": len(training_cutouts), "training_backgrounds": len(backgrounds),
            "choosing_photos": args.photos // 8, "choosing_cutouts": len(choosing_cutouts),
            "heads": records, "head_width": args.width, "fine_width": args.fine_width, "seed": args.seed,
            "seconds": round(time.time() - started, 1),
            "backgrounds": {"train": ", ".join(ROLES["train"]) + ", made",
                            "choosing": "plasma-workspace-wallpapers (alternate half)"}}


def is_localisers(path: Path) -> bool:
    """Whether a file is a localiser's heads file (``.npz``) or its record (``.json``)."""
    try:
        if path.suffix == ".json":
            record = read_json(path)
            return isinstance(record, dict) and "head_sha256" in record
        with np.load(path) as arrays:
            return any(name.endswith("classes/0") for name in arrays.files)
    except (OSError, ValueError, TypeError, AttributeError):   # unreadable, not JSON, not an .npz
        return False


def foreign_output(out: Path) -> Path | None:
    """The heads file ``out`` or its record beside it when it exists and is not a localiser's (training
    would overwrite someone's file); None when both are new or the trainer's own."""
    return next((path for path in (out, out.with_suffix(".json")) if path.exists() and not is_localisers(path)), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=Path, default=Path("../shared/data/fashion-products-small"))
    parser.add_argument("--dev", type=Path, default=Path("../shared/data/fashion-products-dev"))
    parser.add_argument("--small-photos", type=int, default=14000)
    parser.add_argument("--photos", type=int, default=16000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42,
                        help="draws the small photos used and the made photos (never the dev photos' split)")
    parser.add_argument("--head-seeds", type=int, nargs="+", default=[42, 43, 44],
                        help="one head is trained from each, on the same photos; the localiser averages them")
    parser.add_argument("--width", type=int, default=localiser.HEAD_WIDTH,
                        help="each head's channels at strides 32 to 8")
    parser.add_argument("--fine-width", type=int, default=localiser.FINE_WIDTH, help="its channels at stride 4")
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args(argv)
    if min(args.width, args.fine_width) < 1:
        parser.error(f"--width {args.width} --fine-width {args.fine_width}: each at least 1 channel")
    if len(set(args.head_seeds)) < len(args.head_seeds):
        parser.error(f"--head-seeds {' '.join(map(str, args.head_seeds))}: each seed once (the same seed trains "
                     "the same head again)")
    foreign = foreign_output(args.out)
    if foreign is not None:
        parser.error(f"{foreign} exists and is not a localiser's heads file or record: give --out a new name")
    record = train(args) | {"head_sha256": file_sha256(args.out), "command": "make localiser",
                            "arguments": sys.argv[1:] if argv is None else list(argv)}
    write_json(args.out.with_suffix(".json"), record)
    if args.out.resolve() == SHIPPED.resolve():
        docstring = ("The SHA-256 of the shipped garment localiser's heads (garment_localiser.npz), written with it\n"
                     "by ``make localiser``: the loader refuses any other file. Not to be edited by hand.")
        sha256 = record["head_sha256"]
        write_text_atomic(HASH_MODULE, f'"""{docstring}"""\nHEAD_SHA256 = "{sha256}"\n')
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
