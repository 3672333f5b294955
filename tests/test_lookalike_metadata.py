"""Metadata names and values that look alike (issue 33, point 10): one name is one column, one
text is one value whatever its Unicode form, and only plain decimal numbers are numbers."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import unicodedata

import numpy as np
import pandas as pd
import pytest

from fashion_search.data.metadata import MetadataError, metadata_from_json
from fashion_search.search.index.filters import FilterError, filter_mask, filter_options, parse_filter

TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]
CAFE_NFC, CAFE_NFD = "caf\u00e9", "cafe\u0301"
FULL_WIDTH = "\uff27\uff25\uff2e\uff24\uff25\uff32"  # ＧＥＮＤＥＲ
HUGE = "9" * 401


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("header, says", [
    ("id,gender,g\u0435nder", "'g\u0435nder' mixes Latin and Cyrillic letters"),
    ("id,gender,\u0261ender", "'\u0261ender' holds '\u0261' (LATIN SMALL LETTER SCRIPT G)"),
    (f"id,gender,{FULL_WIDTH}", f"the columns 'gender' and '{FULL_WIDTH}' are one name once normalised"),
    (f"id,{CAFE_NFC},{CAFE_NFD}", f"the columns '{CAFE_NFC}' and '{CAFE_NFD}' are one name once normalised"),
    ("id,articleType,\u0301\u0302", "has no letter or digit"),
])
def test_look_alike_column_names_are_refused_in_their_own_process(photo_folder, tmp_path, header, says):
    csv = tmp_path / "meta.csv"
    csv.write_text(f"{header}\n100,a,b\n", encoding="utf-8")
    done = cli("index", str(photo_folder), "--metadata", str(csv), "--index", str(tmp_path / "i"))
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_one_text_is_one_value_and_only_plain_numbers_are_ranged_from_the_command_line(photo_folder, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder / "images", photos)
    sizes = ["5", "Infinity", "1e3", "+7", " 5 ", HUGE, "M", "12", "-3", "0.5", "inf", "1_000", "L"]
    rows = [f'{100 + n},{"Men" if n % 2 else "Women"},{CAFE_NFD if n < 3 else "Casual"},"{size}"'
            for n, size in enumerate(sizes)]
    (photos / "labels.csv").write_text(f"id,{FULL_WIDTH},usage,size\n" + "\n".join(rows) + "\n", encoding="utf-8")
    index = str(tmp_path / "index")
    built = cli("index", str(photos), "--index", index, *TINY)
    assert built.returncode == 0, built.stderr

    def found(*filters: str) -> set[str]:
        done = cli("query", "--like", "112", "--index", index, "--top-k", "30", "--json",
                   *[a for f in filters for a in ("--filter", f)])
        assert done.returncode == 0, done.stderr
        return {r["id"] for r in json.loads(done.stdout)["results"]}

    assert found(f"usage={CAFE_NFC}") == {"100", "101", "102"}
    assert found("gender=Men") == {"101", "103", "105", "107", "109", "111"}  # ＧＥＮＤＥＲ is GENDER
    assert found("size=-10..2000") == {"100", "107", "108", "109"}  # 5, 12, -3, 0.5
    assert found("size=0..") == {"100", "107", "109"}


def test_number_looking_text_stays_text_when_the_index_is_opened_again(photo_folder, tmp_path):
    """A column whose every value pandas would read as a number (1e3, +7, " 5 ") is text: each
    query is a new process that reads the stored table back."""
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder / "images", photos)
    codes = ["1e3", "+7", " 5 ", "12"]
    rows = [f'{100 + n},"{code}"' for n, code in enumerate(codes)]
    (photos / "labels.csv").write_text("id,code\n" + "\n".join(rows) + "\n")
    index = str(tmp_path / "index")
    assert cli("index", str(photos), "--index", index, *TINY).returncode == 0
    done = cli("query", "--like", "101", "--index", index, "--top-k", "30", "--json", "--filter", "code=0..5000")
    assert done.returncode == 0, done.stderr
    assert {r["id"] for r in json.loads(done.stdout)["results"]} == {"103"}
    shown = cli("query", "--like", "101", "--index", index, "--json", "--filter", "code=1e3")
    assert [r["code"] for r in json.loads(shown.stdout)["results"]] == ["1e3"]


def test_json_metadata_is_normalised_and_look_alike_names_are_refused():
    assert metadata_from_json(json.dumps({"usage": CAFE_NFD, "\uff53\uff49\uff5a\uff45": "\uff2d"})) == \
        {"usage": CAFE_NFC, "size": "M"}
    for fields, says in (({CAFE_NFC: 1, CAFE_NFD: 2}, "are one name once normalised"),
                         ({"g\u0435nder": "x"}, "mixes Latin and Cyrillic letters"),
                         ({"\u0301": "x"}, "has no letter or digit")):
        with pytest.raises(MetadataError, match=says):
            metadata_from_json(json.dumps(fields))


def test_a_range_reads_plain_decimal_numbers_only():
    products = pd.DataFrame({"id": [str(i) for i in range(8)],
                             "size": ["5", "Infinity", "1e3", "+7", " 5 ", HUGE, "-2.5", "M"],
                             "limit": [1.0, np.inf, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                             "usage": [CAFE_NFD] * 8, "colours": [""] * 8})
    wide = parse_filter("size=..", products)
    assert filter_mask(products, [wide]).tolist() == [True] + [False] * 5 + [True, False]
    assert filter_mask(products, [parse_filter("size=-1e9..1e9", products)]).sum() == 2
    with pytest.raises(FilterError, match="'limit' holds no plain numbers"):
        parse_filter("limit=0..", products)
    options = filter_options(products, np.ones(8, bool))
    assert "range" not in options["size"] and "range" not in options["limit"]
    nfc = parse_filter(f"usage={unicodedata.normalize('NFC', CAFE_NFD)}", products)
    assert filter_mask(products, [nfc]).all()


def test_numbers_the_index_writes_read_back_as_numbers(photo_folder, tmp_path):
    """A float the table writes (0.00001 would be 1e-05 in pandas' CSV) is still a number when read back."""
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder / "images", photos)
    (photos / "labels.csv").write_text("id,weight\n100,0.00001\n101,2.5\n102,12\n")
    index = str(tmp_path / "index")
    assert cli("index", str(photos), "--index", index, *TINY).returncode == 0
    done = cli("query", "--like", "102", "--index", index, "--json", "--filter", "weight=0..3")
    assert done.returncode == 0, done.stderr
    assert {r["id"] for r in json.loads(done.stdout)["results"]} == {"100", "101"}
