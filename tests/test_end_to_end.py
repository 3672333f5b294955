"""One real run of all six notebooks through papermill, on a tiny configuration."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from fashion_search.pipeline.runner import KERNEL_NAME, NOTEBOOKS_DIR, STAGES
from jupyter_lab import LabServer, run_notebook

pytestmark = pytest.mark.slow   # whole pipeline runs: about two minutes


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fashion_mnist_dir):
    root = tmp_path_factory.mktemp("e2e")
    params = {
        "run": "tiny", "seed": 3,
        "data": {"path": str(fashion_mnist_dir), "per_class": {"train": 10, "validation": 4, "test": 8}},
        "backbones": [{"name": "vgg16", "weights": "none", "image_size": 32},
                      {"name": "efficientnet_lite0", "weights": "imagenet", "image_size": 32},
                      # asked for, but its weights are nowhere (offline): left out of every table, one note
                      {"name": "resnet50", "weights": "imagenet", "image_size": 32}],
        "finetune": {"recipes": ["frozen", "softmax"], "frozen_epochs": 1, "unfrozen_epochs": 1, "batch_size": 16},
        "features": {"chunk_size": 50},
        "visualise": {"n_queries": 2, "top_k": 5},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))

    env = {**os.environ, "KERAS_HOME": str(root / "keras-home"),  # converted weights land here, not in ~
           "FASHION_SEARCH_OFFLINE": "1"}  # the same on a machine with internet

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "fashion_search.cli", "run", "--params", str(root / "params.yaml"),
                               "--outputs", str(root / "outputs"), *extra],
                              capture_output=True, text=True, timeout=900, env=env)

    first = run()
    return root / "outputs" / "tiny", first, run


def test_the_whole_chain_runs_and_leaves_its_artefacts(tiny_run):
    run_dir, first, _ = tiny_run
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in STAGES:
        executed = json.loads((run_dir / "notebooks" / f"{stage}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"]["run_dir"] == str(run_dir)
        assert (run_dir / "reports" / f"{stage}.html").stat().st_size > 10_000
    figures = {p.name for p in (run_dir / "figures").glob("*.png")}
    assert {"learning_curves.png", "queries_efficientnet_lite0-frozen.png", "queries_efficientnet_lite0-softmax.png",
            "queries_vgg16-softmax.png", "map_per_model_0.png", "search_vgg16-softmax.png",
            "search_efficientnet_lite0-frozen.png"} <= figures
    assert (run_dir / "index" / "efficientnet_lite0" / "softmax" / "manifest.json").is_file()


# Typed into the kernel after the notebook: six searches through the panel's own button, one per
# model and item, each output's image measured (a blank white PNG has no spread and no dark pixels).
PANEL_SEARCHES = """
import base64, io, json
import numpy as np
from PIL import Image as _Image
panel = search_widget(engines, test)
item, button, output = panel.children[0].children[1], panel.children[4], panel.children[5]
model = panel.children[1].children[0]
for name, chosen in [(name, chosen) for name in list(engines)[:2] for chosen in item.options[:3]]:
    model.value, item.value = name, chosen
    button.click()
    data = output.outputs[0].get("data", {}) if output.outputs else {}
    if "image/png" not in data:
        print(json.dumps({"kind": "none", "spread": 0, "dark": 0}))
        continue
    grey = np.asarray(_Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("L"))
    print(json.dumps({"kind": "png", "spread": float(grey.std()), "dark": float((grey < 128).mean())}))
"""


def test_jupyterlab_lists_the_kernel_and_runs_the_search_notebook_through_it(tiny_run):
    run_dir, _, _ = tiny_run
    built = {path: path.read_text() for path in (run_dir / "index").rglob("manifest.json")}
    server = LabServer(NOTEBOOKS_DIR)
    try:
        server.wait_ready()
        assert KERNEL_NAME in server.get("/api/kernelspecs").json()["kernelspecs"]
        assert "06_search.ipynb" in {item["name"] for item in server.get("/api/contents").json()["content"]}
        assert "JupyterLab" in server.get("/lab").text
        outputs = run_notebook(server, KERNEL_NAME, NOTEBOOKS_DIR / "06_search.ipynb",
                               {"params_path": str(run_dir / "params.yaml"), "run_dir": str(run_dir)},
                               then=(PANEL_SEARCHES,))
    finally:
        log = server.stop()
    errors = [o for cell in outputs for o in cell if o["type"] == "error"]
    assert not errors, errors[0]["traceback"][-3:] if errors else ""
    panel = [o for cell in outputs for o in cell if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert panel, f"the search panel (an ipywidget) was not displayed: {[[o['type'] for o in c] for c in outputs]}"
    grids = [o for o in outputs[-3] if "image/png" in o.get("data", {})]
    assert len(grids) == 4  # the example search, once per model
    searches = [json.loads(line) for o in outputs[-1] if o["type"] == "stream" for line in o["text"].splitlines()]
    assert len(searches) == 6 and all(s["kind"] == "png" and s["spread"] > 20 and s["dark"] > 0.02 for s in searches)
    assert built and {path: path.read_text() for path in built} == built  # the batch run's indexes, untouched
    assert "Traceback" not in log


def test_the_search_report_shows_each_model_grid_once(tiny_run):
    run_dir, _, _ = tiny_run
    cells = json.loads((run_dir / "notebooks" / "06_search.ipynb").read_text())["cells"]
    example = next(c for c in cells if c["cell_type"] == "code" and "example_grids" in "".join(c["source"]))
    images = [o for o in example["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) == len(list((run_dir / "figures").glob("search_*.png"))) == 4  # 2 backbones × 2 recipes
    shopper = next(c for c in cells if c["cell_type"] == "code" and "shopper_photos" in "".join(c["source"]))
    said = "".join("".join(o.get("text", "")) for o in shopper["outputs"])
    assert "shopper photos need a catalogue of photo files" in said  # Fashion-MNIST has no photos to cut out


def test_map_table_has_the_report_layout_and_says_which_weights_were_used(tiny_run):
    run_dir, _, _ = tiny_run
    table = pd.read_csv(run_dir / "metrics" / "map_table.csv")
    assert set(table["definition"]) == {"report", "standard"}
    assert table["rank"].head(3).tolist() == ["Top 1", "Top 5", "Top 10"]
    assert table["protocol"].unique().tolist() == ["catalogue", "test split"]
    columns = [c for c in table.columns if c not in ("protocol", "relevance", "definition", "distance", "rank")]
    assert [c.split(" (")[0] for c in columns] == ["vgg16 frozen", "vgg16 softmax", "efficientnet_lite0 frozen",
                                                  "efficientnet_lite0 softmax"]
    assert [c.split(" (")[1].split(",")[0] for c in columns] == ["random weights"] * 2 + ["ImageNet"] * 2
    values = table[columns].astype(float).to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    markdown = (run_dir / "metrics" / "map_table.md").read_text()
    assert "| Top 10 |" in markdown and "random initialisation" in markdown
    # the first build converts the package's .pth and caches it: the original file is named
    assert "efficientnet_lite0 weights: package:" in markdown and "sha256" in markdown
    results = (run_dir / "metrics" / "results.md").read_text()
    assert "| softmax |" in results and "| resnet50 |" not in results


def test_an_unavailable_backbone_is_one_note_not_a_column(tiny_run):
    run_dir, first, _ = tiny_run
    table = pd.read_csv(run_dir / "metrics" / "map_table.csv")
    assert not [c for c in table.columns if c.startswith("resnet50")]
    for name in ("map_table.md", "results.md", "headline.md"):
        text = (run_dir / "metrics" / name).read_text()
        assert "Not compared, because their ImageNet weights were not found: resnet50." in text
        assert "copy resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models/" in text
    assert "Not compared" in first.stdout  # the closing summary


def test_the_terminal_streams_progress_and_ends_with_the_table_and_the_reports(tiny_run):
    run_dir, first, _ = tiny_run
    out = first.stdout
    assert "efficientnet_lite0 softmax (frozen backbone): epoch 1/2, loss" in out
    assert "validation mAP@10" in out and "left" in out
    assert "efficientnet_lite0 softmax (unfrozen backbone): epoch 2/2" in out
    assert "images" in out.split("[run ] 03_extract_features")[1].split("[done]")[0]  # extraction progress
    assert "photos" in out.split("[run ] 06_search")[1].split("[done]")[0]  # indexing progress
    summary = out.split("pipeline finished")[1]
    assert "| Top 1 |" in summary and str(run_dir / "reports" / "04_evaluate.html") in summary
    assert max(len(line) for line in summary.splitlines()) < 200
    for noise in ("without encryption", "shuffle=True", "Downloading data from", "setuptools"):
        assert noise not in out + first.stderr


def test_a_second_run_skips_finished_stages(tiny_run):
    _, _, run = tiny_run
    again = run()
    assert again.returncode == 0
    assert again.stdout.count("[skip]") == len(STAGES)


def test_a_failing_notebook_is_named_with_its_cell(tiny_run):
    run_dir, _, run = tiny_run
    shutil.rmtree(run_dir / "features")
    failed = run("--only", "04", "--force")
    assert failed.returncode == 1
    assert "04_evaluate" in failed.stderr and "cell" in failed.stderr and "03" in failed.stderr
    assert (run_dir / "reports" / "04_evaluate.html").exists()
    rerun = run("--from", "03", "--force")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "[run ] 03_extract_features" in rerun.stdout and "[run ] 05_visualise" in rerun.stdout


def test_a_photo_folder_runs_with_two_relevance_definitions(tmp_path, photo_folder):
    params = {
        "run": "photos", "seed": 0,
        "data": {"source": "photo_folder", "path": str(photo_folder), "split": {"validation": 0.25, "test": 0.25}},
        "backbones": [{"name": "efficientnet_lite0", "weights": "none", "image_size": 32}],
        "finetune": {"recipes": ["frozen", "multitask", "fused"], "task_columns": ["articleType", "baseColour"],
                     "frozen_epochs": 1, "unfrozen_epochs": 1, "batch_size": 8, "embedding_dim": 16,
                     "head_epochs": 2},
        "evaluate": {"relevance": ["articleType", "articleType+baseColour"], "ks": [1, 3]},
        "visualise": {"n_queries": 2, "top_k": 3},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "fashion_search.cli", "run", "--params", str(tmp_path / "params.yaml"),
                             "--outputs", str(tmp_path / "outputs")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "outputs" / "photos" / "metrics" / "metrics.csv")
    assert set(summary["model"]) == {"efficientnet_lite0-frozen", "efficientnet_lite0-multitask",
                                     "efficientnet_lite0-fused"}
    assert set(summary["relevance"]) == {"articleType", "articleType+baseColour"}
    # 6 test photos (2 per article type); with colour too, each query has at most one match among them
    split = summary[summary["protocol"] == "test split"].groupby("relevance")[["queries", "skipped"]].first()
    assert split.loc["articleType"].tolist() == [6, 0]
    assert split.sum(axis=1).tolist() == [6, 6]
    # in the whole catalogue, each test photo has 3 others of its type and colour
    catalogue = summary[summary["protocol"] == "catalogue"].groupby("relevance")[["queries", "skipped"]].first()
    assert catalogue.to_numpy().tolist() == [[6, 0], [6, 0]]
    results = (tmp_path / "outputs" / "photos" / "metrics" / "results.md").read_text()
    assert "catalogue protocol" in results.lower() and "relevant = same articleType+baseColour" in results
    assert "| multitask |" in results and "| fused |" in results
    fused = json.loads((tmp_path / "outputs" / "photos" / "models" / "efficientnet_lite0" / "fused"
                        / "manifest.json").read_text())
    assert fused["colour_column"] == "baseColour" and "colour_weight" in fused
    assert (tmp_path / "outputs" / "photos" / "metrics" / "per_baseColour_map@3.csv").is_file()
    assert (tmp_path / "outputs" / "photos" / "figures" / "colour_weights.png").is_file()


def test_a_missing_label_column_is_refused_before_any_work(tmp_path, photo_folder):
    params = {"data": {"source": "photo_folder", "path": str(photo_folder)},
              "backbones": [{"name": "efficientnet_lite0", "weights": "none", "image_size": 32}],
              "evaluate": {"relevance": ["articleType+colour"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "fashion_search.cli", "run", "--params", str(tmp_path / "params.yaml"),
                             "--outputs", str(tmp_path / "outputs")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no column 'colour'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()
