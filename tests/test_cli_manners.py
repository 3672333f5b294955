"""How the CLI behaves at its edges, each command in its own process as a user runs it: a port in
use, a reader that stops early, a bad number, another model, a result table, a contact sheet."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from PIL import ImageFont

from fashion_search.search.contact_sheet import fitted
from conftest import copy_index
from test_search_commands import TINY


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def index_dir(cli_built, tmp_path_factory):
    return copy_index(cli_built("faiss"), tmp_path_factory.mktemp("manners") / "index")   # built by the CLI


def test_serve_on_a_port_in_use_says_so_in_one_line_before_serving(index_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--index", str(index_dir), "--port", str(port), timeout=120)
    assert done.returncode == 2 and "serving" not in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"fashion-search: error: cannot serve on 127.0.0.1:{port}: address already in use; "
        "choose another with --port (and --host)"]


def test_a_reader_that_stops_early_gets_no_traceback(index_dir):
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    writer = subprocess.run([sys.executable, "-m", "fashion_search.cli", "query", "--like", "100", "--index",
                             str(index_dir), "--top-k", "20"], stdout=reader.stdin, stderr=subprocess.PIPE,
                            text=True, timeout=300)
    reader.stdin.close()
    reader.wait(timeout=60)
    assert "Traceback" not in writer.stderr and "BrokenPipe" not in writer.stderr, writer.stderr
    assert writer.returncode in (0, 141)  # 0 when everything fitted in the pipe before head left


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--top-k", "0", "argument --top-k: expected a whole number ≥ 1, got '0'"),
    ("--colour-weight", "2", "argument --colour-weight: expected a number in 0..1, got '2'"),
    ("--match-colour", "nan", "argument --match-colour: expected a number in 0..5, got 'nan'"),
])
def test_a_bad_number_shows_the_query_commands_usage(index_dir, option, value, said):
    done = cli("query", "--like", "100", "--index", str(index_dir), option, value)
    assert done.returncode == 2 and "usage: fashion-search query" in done.stderr and said in done.stderr


def test_another_model_is_named_as_the_user_names_it(index_dir):
    done = cli("query", "--like", "100", "--index", str(index_dir), "--model", "fashion_lite0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    from fashion_search.models import shipped

    recipe = shipped.provenance()["recipe"]
    assert f"but the model given is fashion_lite0 (efficientnet_lite0, {recipe}," in done.stderr


def test_the_result_table_is_narrow_and_names_the_photos_folder(index_dir, photo_folder):
    done = cli("query", "--like", "100", "--index", str(index_dir), "--top-k", "5")
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and max(map(len, lines[1:-1])) <= 100, done.stdout
    assert lines[-1] == f"photos in {photo_folder.resolve() / 'images'}" and "NaN" not in done.stdout
    assert lines[2].split()[-1] in {f"{n}.jpg" for n in range(100, 124)}


def test_a_long_name_keeps_its_start_and_end_on_a_contact_sheet():
    font = ImageFont.load_default(size=12)
    name = "a-very-long-shopper-photo-name-from-a-phone-20261207_101112.jpg"
    short = fitted(name, font, 150)
    assert font.getlength(short) <= 150 and short.startswith("a-very") and short.endswith("101112.jpg")
    assert "…" in short and fitted("dress.jpg", font, 150) == "dress.jpg"


def test_an_add_of_only_unreadable_photos_fails_and_says_where_the_reasons_are(index_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not a photo")
    done = cli("add", str(bad), "--index", str(index_dir))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "added 0 photos" in done.stdout and "skipped 2 photos" in done.stdout
    assert f"none of the 2 photos could be added; the reasons are in {index_dir / 'skipped.csv'}" in done.stderr
    assert cli("query", "--like", "100", "--index", str(index_dir)).returncode == 0  # the index still answers


@pytest.mark.parametrize(("paths", "names", "folder"), [
    (["/shop/photos/a.jpg", "/shop/photos/sub/b.jpg"], ["a.jpg", "sub/b.jpg"], "/shop/photos"),
    (["/shop/photos/a.jpg"], ["a.jpg"], "/shop/photos"),
    (["/tmp/new/a.jpg", "/work/photos/b.jpg"], ["/tmp/new/a.jpg", "/work/photos/b.jpg"], None),  # only / in common
    (["rel/a.jpg", "/abs/b.jpg"], ["rel/a.jpg", "/abs/b.jpg"], None),
])
def test_result_photos_are_named_below_the_folder_they_share(paths, names, folder):
    from fashion_search.search.commands import photo_names

    shown, shared = photo_names(paths)
    assert shown == names and (str(shared) if shared else None) == folder


def test_a_contact_sheet_tile_names_what_a_product_has_not_unknown():
    import pandas as pd

    from fashion_search.search.contact_sheet import known_value

    row = pd.Series({"articleType": "unknown", "brand": "Acme", "colours": "navy"})
    assert known_value(row, ["articleType", "brand", "colours"]) == "Acme"
    assert known_value(pd.Series({"articleType": float("nan"), "brand": "unknown"}), ["articleType", "brand"]) == ""
