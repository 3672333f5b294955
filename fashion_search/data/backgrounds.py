"""Background photos to paste products on: real photos from pinned Debian packages, and made ones.

Three sets that never share a photo: the localiser trains on the MATE, GNOME, UKUI and Lomiri
desktop backgrounds (nature, landscapes, rooms, wood, textures, abstract art) and MyPaint's paper
and canvas textures; half of the KDE Plasma wallpapers (landscapes, water, leaves, graphics)
select its settings; the other half are the benchmark's.
scikit-image's sample photos are kept for evaluation only and are never used here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {  # Debian package: the folder it installs its photos in
    "mate-backgrounds": Path("/usr/share/backgrounds/mate"),
    "gnome-backgrounds": Path("/usr/share/backgrounds/gnome"),
    "plasma-workspace-wallpapers": Path("/usr/share/wallpapers"),
}
# Packages that share a folder with others: their photos are the ones dpkg lists as theirs.
LISTED_PACKAGES = ("ukui-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mypaint-data-extras")
DPKG_LISTS = Path("/var/lib/dpkg/info")
ROLES = {"train": ("mate-backgrounds", "gnome-backgrounds", *LISTED_PACKAGES),
         "validation": ("plasma-workspace-wallpapers",),
         "benchmark": ("plasma-workspace-wallpapers",)}
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
LOAD_SIDE = 640  # backgrounds are kept at most this large; crops are resized from them


class BackgroundsMissingError(FileNotFoundError):
    """The Debian package holding a set of background photos is not installed."""


def _one_per_wallpaper(folder: Path) -> list[Path]:
    """A Plasma wallpaper comes in many sizes (``<name>/contents/images/<w>x<h>.png``): the largest under 2,000 px."""
    def width(path: Path) -> int:
        named = path.stem.split("x")[0]
        return int(named) if named.isdigit() else 0

    chosen = []
    for wallpaper in sorted(p for p in folder.iterdir() if (p / "contents" / "images").is_dir()):
        sizes = sorted((p for p in (wallpaper / "contents" / "images").iterdir() if p.suffix.lower() in SUFFIXES),
                       key=width)
        usable = [p for p in sizes if width(p) <= 2000] or sizes
        if usable:
            chosen.append(usable[-1])
    return chosen


def _listed_photos(package: str, role: str) -> list[Path]:
    """The photos an installed Debian package holds, by dpkg's list of its files."""
    listed = DPKG_LISTS / f"{package}.list"
    if not listed.is_file():
        raise BackgroundsMissingError(f"the background photos of {role} come from the Debian package {package}, "
                                      f"which is not installed: apt-get install {package}")
    files = (Path(line) for line in listed.read_text().splitlines())
    photos = sorted(p for p in files if p.suffix.lower() in SUFFIXES and p.is_file())
    if not photos:
        raise BackgroundsMissingError(f"the Debian package {package} lists no photo that is on disk (its files were "
                                      f"removed?): apt-get install --reinstall {package}")
    return photos


def background_paths(role: str) -> list[Path]:
    """The photos of one set (``train``, ``validation`` or ``benchmark``), in a fixed order."""
    paths = []
    for package in ROLES[role]:
        if package in LISTED_PACKAGES:
            paths += _listed_photos(package, role)
            continue
        folder = PACKAGES[package]
        if not folder.is_dir():
            raise BackgroundsMissingError(f"the background photos of {role} come from the Debian package {package}, "
                                          f"which is not installed: apt-get install {package}")
        if package == "plasma-workspace-wallpapers":
            wallpapers = _one_per_wallpaper(folder)
            paths += wallpapers[role == "benchmark"::2]
        else:
            paths += sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and "_" not in p.stem)
    return paths


def load_background(path: Path, side: int = LOAD_SIDE) -> np.ndarray:
    """A background photo as RGB uint8, its longer side at most ``side``."""
    with Image.open(path) as image:
        image.draft("RGB", (side, side))
        image = image.convert("RGB")
        image.thumbnail((side, side))
        return np.asarray(image, dtype=np.uint8)


def load_backgrounds(role: str) -> list[np.ndarray]:
    """Every photo of one set, loaded."""
    return [load_background(path) for path in background_paths(role)]


def made_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A background made from nothing: a tinted gradient, stripes, checks or a mottled surface, with grain."""
    y, x = np.mgrid[0:size, 0:size] / size
    base, other = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    kind = rng.integers(4)
    if kind == 0:
        share = (x * np.cos(rng.uniform(0, np.pi)) + y * np.sin(rng.uniform(0, np.pi)))
        share = (share - share.min()) / max(np.ptp(share), 1e-6)
    elif kind == 1:
        share = (np.sin((x * np.cos(a := rng.uniform(0, np.pi)) + y * np.sin(a)) * rng.uniform(8, 60)) > 0) * 1.0
    elif kind == 2:
        period = rng.uniform(4, 24)
        share = ((np.floor(x * period) + np.floor(y * period)) % 2) * rng.uniform(0.3, 1.0)
    else:
        coarse = rng.random((rng.integers(3, 12),) * 2)
        share = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)) / 255
    pixels = base + share[..., None] * (other - base) + rng.normal(0, rng.uniform(2, 12), (size, size, 1))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def background_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """A random square crop of a background photo, ``(size, size, 3)``, from a fifth of it to all of its short side."""
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(0.2, 1.0))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
    return np.asarray(crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
