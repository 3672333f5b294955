import numpy as np
import pandas as pd
import pytest

from fashion_search.catalog import Catalog
from fashion_search.evaluate import evaluate_store, map_tables, map_tables_markdown
from fashion_search.features import FeatureStore


def test_catalog(labels):
    items = pd.DataFrame({"id": [f"i{n}" for n in range(len(labels))], "label": labels,
                          "category": [f"c{v}" for v in labels], "split": "test"})
    return Catalog(items, np.zeros((len(labels), 28, 28), np.uint8))


test_catalog.__test__ = False  # a helper, not a test


def test_perfectly_separated_features_score_one_and_singletons_are_skipped():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])  # class 2 has a single item: no relevant result exists
    features = np.array([[0, 0], [0, 0.1], [0.1, 0], [5, 5], [5, 5.1], [5.1, 5], [-9, 9]], np.float32)
    catalog = test_catalog(labels)
    store = FeatureStore(features, catalog.items["id"].tolist(), {"backbone": "toy"})
    result = evaluate_store(store, catalog, (1, 2, 5), "euclidean")
    assert result.skipped_queries == 1 and len(result.per_query) == 6
    top = result.summary.set_index("k")
    assert top.loc[1, "map_report"] == pytest.approx(1.0)
    assert top.loc[2, "map_standard"] == pytest.approx(1.0)
    assert top.loc[5, "precision"] == pytest.approx(2 / 5)  # only 2 other items share each class
    assert (result.neighbours != np.arange(7)[:, None]).all()  # never itself


def test_store_of_other_items_is_refused():
    catalog = test_catalog(np.array([0, 0, 1]))
    store = FeatureStore(np.zeros((3, 2), np.float32), ["x", "y", "z"], {"backbone": "toy"})
    with pytest.raises(ValueError, match="ids"):
        evaluate_store(store, catalog, (1,), "euclidean")


def test_table_keeps_a_column_for_unavailable_weights_and_marks_random_ones():
    summary = pd.DataFrame({"backbone": "resnet50", "distance": "euclidean", "k": [1, 5],
                            "map_report": [0.5, 0.6], "map_standard": [0.5, 0.4]})
    manifests = [{"backbone": "resnet50", "weights": "none", "image_size": 32, "finetuned": True},
                 {"backbone": "vgg16", "weights": "imagenet", "image_size": 224, "available": False,
                  "hint": "copy it into ~/.keras/models/"}]
    table = map_tables(summary, manifests, (1, 5), ("euclidean",))
    assert table["rank"].tolist() == ["Top 1", "Top 5", "Top 1", "Top 5"]
    random_column = "resnet50 (random weights, fine-tuned, 32 px)"
    assert table[random_column].tolist() == ["0.5000", "0.6000", "0.5000", "0.4000"]
    vgg = [c for c in table.columns if c.startswith("vgg16")][0]
    assert table[vgg].str.startswith("weights unavailable: copy it").all()
    markdown = map_tables_markdown(table, ["a note"])
    assert "## Report definition, euclidean distance" in markdown and "| Top 5 |" in markdown
