"""The engine touches only what it owns: an index goes only into a new, empty or index folder;
changes delete or rewrite only files the engine recorded as its own; nothing is followed through a
symbolic link; a copied Milvus Lite index uses its own database. Each command runs in its own
process, as a person types it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--model", "efficientnet_lite0", "--weights", "none", "--image-size", "32"]
USER_FILES = {".env": "SECRET=1", ".gitignore": "*.pyc", ".bashrc": "alias ll='ls -l'", "products-000002.csv": "mine",
              "faiss-backup.faiss": "mine", "vectors.txt": "mine", "colours-notes.md": "mine", "manifest.yaml": "mine"}


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)


def one_line_refusal(done: subprocess.CompletedProcess, says: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and says in lines[0], done.stderr[-2000:]


def plant(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def untouched(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).read_text() == text for name, text in files.items())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(cli_built) -> Path:
    """A faiss index of the photo folder, built by the CLI (once a session; each test copies it)."""
    return cli_built("faiss")


@pytest.fixture
def index(built, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(built, copy)
    return copy


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_folder_that_is_not_an_index_is_refused_and_left_whole(photo_folder, tmp_path, overwrite):
    """A user's folder (here with a .git folder and dotfiles), and the catalogue folder itself."""
    folder = tmp_path / "userdir"
    plant(folder, {**USER_FILES, ".git/HEAD": "ref: refs/heads/main", ".git/config": "[core]"})
    before = snapshot(folder)
    one_line_refusal(cli("index", str(photo_folder), "--index", str(folder), *TINY, *overwrite),
                     "is not empty and holds no index")
    assert snapshot(folder) == before
    catalogue = snapshot(photo_folder)
    one_line_refusal(cli("index", str(photo_folder), "--index", str(photo_folder), *TINY, *overwrite),
                     "is not empty and holds no index")
    assert snapshot(photo_folder) == catalogue


def test_an_index_folder_keeps_the_users_files_through_every_change(index, photo_folder, tmp_path):
    """Files a user put in an index folder, named like the engine's or not, survive add, remove,
    compact and --overwrite; the index's own old generations go."""
    plant(index, {**USER_FILES, "notes/todo.txt": "mine", "products-000099.csv": "mine", "vectors-000009.f32": "m"})
    users = {**USER_FILES, "notes/todo.txt": "mine", "products-000099.csv": "mine", "vectors-000009.f32": "m"}
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(photo_folder / "images" / "999.jpg", extra / "777.jpg")
    for argv in (("add", str(extra)), ("remove", "100"), ("compact",), ("remove", "102")):
        done = cli(*argv, "--index", str(index))
        assert done.returncode == 0, done.stderr[-2000:]
    assert untouched(index, users)
    owned = set(json.loads((index / "owned-files.json").read_text())["names"])
    assert not {"products-000001.csv", "vectors.f32", "faiss-000001.faiss"} & owned  # old generations: gone
    assert not (index / "products-000001.csv").exists() and not (index / "vectors.f32").exists()
    done = cli("index", str(photo_folder), "--index", str(index), *TINY, "--overwrite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert untouched(index, users)
    query = cli("query", "--like", "100", "--index", str(index), "--json")
    assert query.returncode == 0 and json.loads(query.stdout)["results"][0]["id"] != "100"


def test_overwrite_does_not_follow_a_linked_folder_inside(index, tmp_path, photo_folder):
    elsewhere = tmp_path / "elsewhere"
    plant(elsewhere, {"keep.jpg": "photo", "sub/deep.txt": "mine"})
    (index / "linked").symlink_to(elsewhere)
    (index / "uploads").symlink_to(elsewhere, target_is_directory=True)
    done = cli("index", str(photo_folder), "--index", str(index), *TINY, "--overwrite")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (index / "linked").is_symlink() and (index / "uploads").is_symlink()
    assert untouched(elsewhere, {"keep.jpg": "photo", "sub/deep.txt": "mine"})


def test_debris_clean_up_never_follows_a_linked_uploads_folder(index, tmp_path):
    elsewhere = tmp_path / "photos-of-mine"
    plant(elsewhere, {"a.1234abcd.png": "photo", "b.png": "photo"})
    old = time.time() - 3600
    for path in elsewhere.iterdir():
        os.utime(path, (old, old))
    (index / "uploads").symlink_to(elsewhere, target_is_directory=True)
    for argv in (("remove", "100"), ("compact",)):
        assert cli(*argv, "--index", str(index)).returncode == 0
    assert untouched(elsewhere, {"a.1234abcd.png": "photo", "b.png": "photo"})


def test_a_linked_index_file_is_refused_not_written_through(index, tmp_path, photo_folder):
    other = tmp_path / "other"
    shutil.copytree(index, other)
    (index / "vectors.f32").unlink()
    (index / "vectors.f32").symlink_to(other / "vectors.f32")
    before = (other / "vectors.f32").read_bytes()
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(photo_folder / "images" / "999.jpg", extra / "777.jpg")
    one_line_refusal(cli("add", str(extra), "--index", str(index)), "vectors.f32 is a symbolic link")
    one_line_refusal(cli("query", "--like", "100", "--index", str(index)), "vectors.f32 is a symbolic link")
    assert (other / "vectors.f32").read_bytes() == before


def test_a_copied_milvus_lite_index_changes_only_itself(cli_index, tmp_path):
    original, copy = cli_index("milvus", "idxm"), tmp_path / "idxmcopy"   # built by the CLI
    assert json.loads((original / "manifest.json").read_text())["milvus"]["uri"] == "milvus.db"
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    for argv in (("remove", "100"), ("compact",)):
        done = cli(*argv, "--index", str(copy))
        assert done.returncode == 0, done.stderr[-2000:]
    query = cli("query", "--like", "104", "--index", str(original), "--json", "--top-k", "30")
    assert query.returncode == 0, query.stderr[-2000:]
    assert "100" in {r["id"] for r in json.loads(query.stdout)["results"]}
    assert "intact" in cli("verify", "--index", str(original)).stdout
    copied = cli("query", "--like", "104", "--index", str(copy), "--json", "--top-k", "30")
    assert copied.returncode == 0 and "100" not in {r["id"] for r in json.loads(copied.stdout)["results"]}


def test_two_milvus_lite_writers_take_turns(cli_index):
    """A process holding the Milvus Lite database for 3 s; a removal started meanwhile waits for it
    (index.lock_wait_s, 10 s), then lands."""
    folder = cli_index("milvus")   # built by the CLI
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom fashion_search.search.index.milvus_index "
                               f"import connect\nc = connect({str(folder / 'milvus.db')!r})\nprint('open', flush=True)"
                               "\ntime.sleep(3)\nc.close()"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        done = cli("remove", "100", "--index", str(folder))
    finally:
        holder.kill()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "removed 1 products" in done.stdout


def test_overwrite_keeps_what_the_ledger_does_not_name_even_under_the_engines_folder_names(index, photo_folder):
    """A user's uploads/ photo and milvus.db folder in a faiss index folder: not the engine's."""
    users = {"uploads/mine.jpg": "photo", "milvus.db/notes.txt": "mine"}
    plant(index, users)
    done = cli("index", str(photo_folder), "--index", str(index), *TINY, "--overwrite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert untouched(index, users)


def test_names_outside_the_folder_are_never_deleted(index, tmp_path):
    """A forged ledger naming ../victim.txt, and a manifest whose previous files name the folder itself."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    ledger = json.loads((index / "owned-files.json").read_text())
    (index / "owned-files.json").write_text(json.dumps({**ledger, "names": [*ledger["names"], "../victim.txt", "."]}))
    assert cli("remove", "100", "--index", str(index)).returncode == 0
    assert victim.read_text() == "keep me" and (index / "manifest.json").is_file()
    manifest = json.loads((index / "manifest.json").read_text())
    (index / "manifest.json").write_text(json.dumps({**manifest, "previous_files": {"p": "."}}))
    one_line_refusal(cli("info", "--index", str(index)), "previous_files")
    assert cli("index", str(tmp_path), "--index", str(index), *TINY, "--overwrite").returncode == 2  # no photos
    assert victim.read_text() == "keep me" and (index / "owned-files.json").is_file()


def test_a_damaged_ledger_is_said_and_overwrite_repairs_it(index, photo_folder):
    (index / "owned-files.json").write_text('{"names": [')
    one_line_refusal(cli("query", "--like", "100", "--index", str(index)), "owned-files.json")
    done = cli("index", str(photo_folder), "--index", str(index), *TINY, "--overwrite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert cli("query", "--like", "100", "--index", str(index)).returncode == 0


def test_a_failed_overwrite_leaves_the_index_it_would_replace(index, photo_folder):
    """A mistyped model is refused before anything of the index is deleted."""
    done = cli("index", str(photo_folder), "--index", str(index), "--model", "no-such-model", "--overwrite")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert cli("query", "--like", "100", "--index", str(index)).returncode == 0


def test_a_linked_lock_file_is_one_line(index, tmp_path):
    (tmp_path / "elsewhere").write_text("mine")
    (index / ".lock").unlink()
    (index / ".lock").symlink_to(tmp_path / "elsewhere")
    one_line_refusal(cli("remove", "100", "--index", str(index)), ".lock is a symbolic link")
    assert (tmp_path / "elsewhere").read_text() == "mine"


def test_an_upload_path_given_from_inside_the_index_folder_counts_as_live():
    import pandas as pd

    from fashion_search.search.index.index_folder import in_use

    products = pd.DataFrame({"path": ["uploads/a.1234abcd.png", "/x/idx/uploads/b.5678abcd.png", "/x/photos/c.jpg"],
                             "deleted": [False, False, False]})
    assert {"uploads/a.1234abcd.png", "uploads/b.5678abcd.png"} <= in_use({}, products)
    assert "c.jpg" not in in_use({}, products)
