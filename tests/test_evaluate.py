import numpy as np
import pandas as pd
import pytest

from fashion_search.data.catalog import Catalog
from fashion_search.pipeline.report import (comparison_table, headline_markdown, map_tables, map_tables_markdown,
                                            unavailable_note)
from fashion_search.pipeline.report_view import demote_headings, report_layout_markdown
from fashion_search.pipeline.evaluate import evaluate_store, rank_store
from fashion_search.pipeline.features import FeatureStore


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
    result = evaluate_store(store, catalog, (1, 2, 5), "euclidean", "category")
    assert result.skipped_queries == 1 and len(result.per_query) == 6
    top = result.summary.set_index("k")
    assert top.loc[1, "map_report"] == pytest.approx(1.0)
    assert top.loc[2, "map_standard"] == pytest.approx(1.0)
    assert top.loc[5, "precision"] == pytest.approx(2 / 5)  # only 2 other items share each class
    ranking = rank_store(store, catalog, 5, "euclidean")
    assert (ranking.neighbours != np.arange(7)[:, None]).all()  # never itself


def test_store_of_other_items_is_refused():
    catalog = test_catalog(np.array([0, 0, 1]))
    store = FeatureStore(np.zeros((3, 2), np.float32), ["x", "y", "z"], {"backbone": "toy"})
    with pytest.raises(ValueError, match="ids"):
        evaluate_store(store, catalog, (1,), "euclidean", "category")


def test_relevance_on_two_columns_needs_both_to_match():
    labels = np.array([0, 0, 0, 0])
    catalog = test_catalog(labels)
    catalog.items["colour"] = ["red", "blue", "red", "blue"]
    # item 0's nearest neighbour is item 1: same category, other colour
    features = np.array([[0.0], [1.0], [3.0], [4.0]], np.float32)
    store = FeatureStore(features, catalog.items["id"].tolist(), {"backbone": "toy"})
    by_category = evaluate_store(store, catalog, (1,), "euclidean", "category")
    by_both = evaluate_store(store, catalog, (1,), "euclidean", "category+colour")
    assert by_category.summary.loc[0, "map_report"] == pytest.approx(1.0)
    # nearest of 0 is 1 (blue: miss), of 1 is 0 (miss), of 2 is 3 (miss), of 3 is 2 (miss)
    assert by_both.summary.loc[0, "map_report"] == pytest.approx(0.0)
    assert by_both.skipped_queries == 0 and list(by_both.per_query.columns[:3]) == ["id", "category", "colour"]


def test_unavailable_backbones_get_no_column_but_one_note_and_random_weights_are_marked():
    summary = pd.DataFrame({"model": "resnet50-softmax", "protocol": "catalogue", "relevance": "category",
                            "distance": "euclidean", "k": [1, 5], "map_report": [0.5, 0.6], "map_standard": [0.5, 0.4],
                            "precision": [0.5, 0.3], "recall": [0.5, 0.9]})
    vgg = {"backbone": "vgg16", "weights": "imagenet", "image_size": 224, "available": False,
           "hint": "copy vgg16.h5 into ~/.keras/models/", "cache_file": "vgg16.h5"}
    manifests = {"resnet50-softmax": {"backbone": "resnet50", "recipe": "softmax", "weights": "none",
                                      "image_size": 32, "train_seconds": 90},
                 "vgg16-frozen": {**vgg, "recipe": "frozen"}, "vgg16-softmax": {**vgg, "recipe": "softmax"}}
    table = map_tables(summary, manifests, (1, 5), ("category",), ("euclidean",))
    assert table["rank"].tolist() == ["Top 1", "Top 5", "Top 1", "Top 5"]
    random_column = "resnet50 softmax (random weights, 32 px)"
    assert table[random_column].tolist() == ["0.5000", "0.6000", "0.5000", "0.4000"]
    assert not [c for c in table.columns if c.startswith("vgg16")]
    note = unavailable_note(manifests)
    assert note.count("copy vgg16.h5 into ~/.keras/models/") == 1  # one fix per backbone, not per recipe
    lite1 = {"backbone": "efficientnet_lite1", "available": False, "hint": "pip install lite1"}
    both = unavailable_note({**manifests, "lite1-frozen": lite1})
    assert "copy vgg16.h5 into ~/.keras/models/" in both and "efficientnet_lite1: pip install lite1" in both
    markdown = map_tables_markdown(table, ["a note"], note)
    assert "## Catalogue protocol; relevant = same category; report definition, euclidean distance" in markdown
    assert "| Top 5 |" in markdown and markdown.count("copy vgg16.h5") == 1  # once, not under each table
    assert max(len(line) for line in markdown.splitlines() if line.startswith("|")) < 120
    compact = report_layout_markdown(table, note)
    assert "| resnet50 softmax (random weights, 32 px) | 0.5000 | 0.6000 |" in compact and compact.count("copy vgg16") == 1
    assert demote_headings("# mAP@k\n## Catalogue\ntext # not\n") == "### mAP@k\n#### Catalogue\ntext # not\n"
    headline = headline_markdown(table, note)
    assert headline.count("| Top") == 2 and "0.6000" in headline and "0.4000" not in headline
    compared = comparison_table(summary, manifests, "category", "euclidean", (1, 5)).set_index("recipe")
    assert compared.index.tolist() == ["softmax"]
    assert compared.loc["softmax", "training (min)"] == "1.5" and compared.loc["softmax", "R@5"] == "0.9000"


def test_no_note_when_every_backbone_was_built():
    assert unavailable_note({"m": {"backbone": "efficientnet_lite0", "available": True}}) == ""


def test_gains_are_paired_against_frozen_features_of_the_same_backbone_and_size():
    from fashion_search.pipeline.report import gains_table, paired_gains

    rng = np.random.default_rng(0)
    frozen = rng.uniform(0.3, 0.9, 200)
    per_query = {"lite0-frozen": pd.DataFrame({"ap_report@10": frozen, "ap_standard@10": frozen / 2}),
                 "lite0-cosface": pd.DataFrame({"ap_report@10": frozen + 0.05, "ap_standard@10": frozen / 2}),
                 "lite0@160-cosface": pd.DataFrame({"ap_report@10": frozen + 0.2, "ap_standard@10": frozen})}
    lite0 = {"backbone": "efficientnet_lite0", "image_size": 224}
    manifests = {"lite0-frozen": {**lite0, "recipe": "frozen"}, "lite0-cosface": {**lite0, "recipe": "cosface"},
                 "lite0@160-cosface": {**lite0, "image_size": 160, "recipe": "cosface"}}
    gains = gains_table(per_query, manifests, 10).set_index("model")
    assert gains.index.tolist() == ["lite0-cosface"]  # never against frozen features at another size
    assert gains.loc["lite0-cosface", "against"] == "lite0-frozen"
    # the same queries moved by the same amount: the paired interval has no width at all
    assert gains.loc["lite0-cosface", "mAP@10 gain [95% interval]"] == "+0.0500\u00a0[+0.0500,\u00a0+0.0500]"
    assert gains.loc["lite0-cosface", "mAP@10 (÷min(k,R)) gain [95% interval]"] == "+0.0000\u00a0[+0.0000,\u00a0+0.0000]"
    numbers = paired_gains(per_query, manifests, 10).iloc[0]
    assert numbers["queries"] == 200 and numbers["gain_report"] == pytest.approx(0.05)
    assert numbers["gain_report_low"] == pytest.approx(0.05) and numbers["gain_standard_high"] == pytest.approx(0)


def test_the_catalogue_protocol_searches_every_split_and_counts_relevance_there():
    labels = np.array([0, 0, 1, 1, 0, 1])
    catalog = test_catalog(labels)
    catalog.items["split"] = ["train", "train", "validation", "train", "test", "test"]
    # the test item of class 0 lies next to a train item of class 1; its class-0 twins are farther
    features = np.array([[0.0], [0.2], [5.0], [1.0], [0.9], [6.0]], np.float32)
    store = FeatureStore(features, catalog.items["id"].tolist(), {"backbone": "toy"})
    catalogue = evaluate_store(store, catalog, (1, 3), "euclidean", "category", protocol="catalogue")
    split = evaluate_store(store, catalog, (1,), "euclidean", "category", protocol="test split")
    assert split.skipped_queries == 2  # two test items of different classes: nothing relevant to find
    assert catalogue.skipped_queries == 0 and catalogue.per_query["id"].tolist() == ["i4", "i5"]
    ranking = rank_store(store, catalog, 3, "euclidean", protocol="catalogue")
    assert ranking.neighbours[0].tolist() == [3, 1, 0] and 4 not in ranking.neighbours[0]  # never itself
    assert ranking.neighbours[1].tolist() == [2, 3, 4]
    top = catalogue.summary.set_index("k")
    assert top.loc[1, "map_report"] == pytest.approx(0.5)  # i4 misses at rank 1, i5 hits
    assert top.loc[3, "map_standard"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + (1 + 2 / 2) / 2) / 2)
    with pytest.raises(ValueError, match="protocol"):
        rank_store(store, catalog, 1, "euclidean", protocol="everything")


def test_each_protocols_neighbours_are_saved_apart_for_the_visualisation(tmp_path):
    from fashion_search.pipeline.evaluate import load_neighbours, save_ranking

    catalog = test_catalog(np.array([0, 0, 1, 1, 0, 1]))
    catalog.items["split"] = ["train", "train", "validation", "train", "test", "test"]
    store = FeatureStore(np.arange(6, dtype=np.float32)[:, None], catalog.items["id"].tolist(), {"backbone": "toy"})
    for protocol in ("catalogue", "test split"):
        save_ranking(rank_store(store, catalog, 1, "euclidean", model="toy", protocol=protocol), tmp_path)
    whole, _ = load_neighbours(tmp_path, "toy", "euclidean", "catalogue")
    split, _ = load_neighbours(tmp_path, "toy", "euclidean")
    assert whole[:, 0].tolist() == [3, 4] and split[:, 0].tolist() == [1, 0]  # catalogue rows, test-split rows
    with pytest.raises(FileNotFoundError, match="run the evaluation stage"):
        load_neighbours(tmp_path, "other", "euclidean", "catalogue")


def test_the_per_colour_section_has_a_table_per_colour_definition_or_says_why_not(tmp_path):
    from fashion_search.layout import RunLayout
    from fashion_search.pipeline.report_view import per_colour_sections

    layout = RunLayout(tmp_path)
    (title, table), = per_colour_sections(layout, ["m"], ("category",), "euclidean", 10)
    assert table is None and "no relevance definition asks for a colour" in title and "category" in title
    (title, _), = per_colour_sections(layout, ["m"], ("category",), "euclidean", 10, source="fashion_mnist")
    assert "Fashion-MNIST has no colour" in title and "grayscale" in title
    layout.retrieval.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ["1", "2", "3"], "category": ["a", "a", "b"], "colour": ["red", "blue", "red"],
                  "ap_report@10": [1.0, 0.0, 0.5]}).to_csv(
        layout.per_query("m", "category+colour", "euclidean", "catalogue"), index=False)
    (title, table), = per_colour_sections(layout, ["m"], ("category", "category+colour"), "euclidean", 10)
    assert title == "**Relevant = same category+colour: mAP@10 per colour**"
    assert table.loc["red", "m"] == 0.75 and table.loc["blue", "m"] == 0.0
