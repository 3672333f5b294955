"""``fashion-search index / query / add / remove / info`` end to end, with a small random-weight model."""
from __future__ import annotations

import json
import shutil

import pytest

from fashion_search.cli import main

TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]


@pytest.fixture(scope="module")
def index_dir(photo_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "index"
    assert main(["index", str(photo_folder), "--index", str(folder), *TINY]) == 0
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_query_finds_the_photo_itself_first(index_dir, photo_folder, capsys, tmp_path):
    photo = photo_folder / "images" / "108.jpg"
    code, out, _ = run(capsys, "query", str(photo), "--index", str(index_dir), "--top-k", "3", "--json",
                       "--contact-sheet", str(tmp_path / "sheet.png"))
    results = json.loads(out)["results"]
    assert code == 0 and results[0]["id"] == "108" and len(results) == 3
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    code, out, _ = run(capsys, "query", str(photo), "--index", str(index_dir), "--filter", "articleType=Jeans",
                       "--top-k", "20")
    assert code == 0 and out.count("Jeans") == 8 and "Tshirts" not in out  # all 8 pairs of jeans, nothing else


def test_info_add_remove_and_more_like_this(index_dir, photo_folder, capsys, tmp_path):
    code, out, _ = run(capsys, "info", "--index", str(index_dir), "--json")
    assert code == 0 and json.loads(out)["products"] == 25 and json.loads(out)["kind"] == "flat"
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(photo_folder / "images" / "110.jpg", new / "900.jpg")
    assert run(capsys, "add", str(new / "900.jpg"), "--index", str(index_dir))[0] == 0
    code, out, _ = run(capsys, "query", "--like", "900", "--index", str(index_dir), "--top-k", "2", "--json")
    results = json.loads(out)["results"]
    assert code == 0 and results[0]["id"] == "110" and "900" not in {r["id"] for r in results}
    assert run(capsys, "remove", "900", "--index", str(index_dir))[0] == 0
    assert json.loads(run(capsys, "info", "--index", str(index_dir), "--json")[1])["products"] == 25


@pytest.mark.parametrize("argv, message", [
    (["query", "{photos}/images/missing.jpg"], "cannot read the query photo .*missing.jpg: file missing"),
    (["query", "{photos}/labels.csv"], "cannot read the query photo .*not a readable image"),
    (["query", "{photos}/images/100.jpg", "--filter", "size=M"], "unknown filter key 'size'"),
    (["query", "--colour", "reddish"], "'reddish' is not a colour"),
    (["query", "{photos}/images/100.jpg", "--model", "efficientnet_lite0"], "was built with efficientnet_lite0"),
    (["info", "--index", "{tmp}/nowhere"], "no index in"),
    (["remove", "nobody"], "not in the index: nobody"),
])
def test_user_mistakes_give_one_line_and_exit_2(index_dir, photo_folder, tmp_path, capsys, argv, message):
    argv = [a.format(photos=photo_folder, tmp=tmp_path) for a in argv]
    if "--index" not in argv:
        argv += ["--index", str(index_dir)]
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("fashion-search: error: ")
    import re
    assert re.search(message, err), err


def test_a_filter_value_that_matches_nothing_names_the_values_that_exist(index_dir, photo_folder, capsys):
    photo = photo_folder / "images" / "108.jpg"
    code, out, err = run(capsys, "query", str(photo), "--index", str(index_dir), "--filter", "articleType=Tshirt")
    assert code == 0 and "no product matches" in out
    assert "no product has articleType=Tshirt; articleType values, closest first: Tshirts" in err


def test_fashion_mnist_is_a_catalogue_too(fashion_mnist_dir, tmp_path, capsys):
    code, out, _ = run(capsys, "index", str(fashion_mnist_dir), "--layout", "fashion-mnist", "--index",
                       str(tmp_path / "fm"), *TINY)
    assert code == 0 and "indexed 120 products" in out
    code, out, _ = run(capsys, "query", "--like", "test-0", "--index", str(tmp_path / "fm"), "--top-k", "5", "--json")
    ids = [r["id"] for r in json.loads(out)["results"]]
    assert code == 0 and len(ids) == 5 and "test-0" not in ids
