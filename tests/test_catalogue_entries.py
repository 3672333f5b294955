"""Entries of a catalogue folder that are not photo files, and cells a spreadsheet would run
(issue 33, point 11): every such entry is listed in skipped.csv with its reason, none is read,
and no cell of skipped.csv starts a formula."""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd

from fashion_search.data.catalog import spreadsheet_safe
from fashion_search.data.photo_folder import list_photo_folder

TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]


def odd_entries(folder) -> None:
    """A FIFO, links to devices, a link to nothing and a folder, each named like a photo."""
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "noise.png").symlink_to("/dev/urandom")
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "album.jpg").mkdir()


def test_odd_entries_are_listed_not_read_and_formula_cells_are_escaped_from_the_command_line(photo_folder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("100.jpg", "104.jpg"):
        shutil.copy(photo_folder / "images" / name, photos / name)
    shutil.copy(photo_folder / "images" / "108.jpg", photos / "=cmd|calc.jpg")
    odd_entries(photos)
    index = tmp_path / "index"
    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "index", str(photos), "--index", str(index),
                           *TINY], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(index / "skipped.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    reasons = {row["id"]: row["reason"] for row in rows}
    assert reasons.pop("'=cmd|calc").startswith("id '=cmd|calc' cannot be served")
    assert reasons == {"pipe": "a pipe (FIFO), not a photo file", "zero": "a link to a device, not a photo file",
                       "noise": "a link to a device, not a photo file",
                       "gone": "a link to nothing (its target is missing)", "album": "a folder, not a photo file"}
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for row in rows for cell in row.values())


def test_a_listed_id_whose_photo_is_no_file_says_what_it_is(tmp_path):
    odd_entries(tmp_path)
    (tmp_path / "labels.csv").write_text("id,category\npipe,a\nzero,b\n")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s.jpg"))
    try:
        catalog = list_photo_folder(tmp_path)
    finally:
        server.close()
    assert len(catalog) == 0
    assert dict(zip(catalog.skipped["id"], catalog.skipped["reason"])) == {
        "pipe": "a pipe (FIFO), not a photo file", "zero": "a link to a device, not a photo file",
        "noise": "a link to a device, not a photo file", "gone": "a link to nothing (its target is missing)",
        "album": "a folder, not a photo file", "s": "a socket, not a photo file"}


def test_cells_a_spreadsheet_would_run_are_escaped_once():
    frame = pd.DataFrame({"id": ["=cmd|calc", "+1", "-x", "@sum", "\tx", "\rx", "ok", "'=already"],
                          "rows": range(8)})
    safe = spreadsheet_safe(frame)
    assert safe["id"].tolist() == ["'=cmd|calc", "'+1", "'-x", "'@sum", "'\tx", "'\rx", "ok", "'=already"]
    assert safe["rows"].tolist() == list(range(8)) and frame["id"].iloc[0] == "=cmd|calc"
    assert spreadsheet_safe(safe).equals(safe)
