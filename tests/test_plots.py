"""The report's figures: nothing drawn over the bars, human titles and axes, the queries 05 shows."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fashion_search.data.catalog import Catalog  # noqa: E402
from fashion_search.pipeline import plots  # noqa: E402
from fashion_search.pipeline.evaluate import (pick_queries, showcase_queries,  # noqa: E402
                                              worst_and_best_categories)


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def catalog(labels: list[str]) -> Catalog:
    items = pd.DataFrame({"id": [str(i) for i in range(len(labels))], "category": labels,
                          "split": ["train", "validation", "test"] * (len(labels) // 3) + ["test"] * (len(labels) % 3)})
    return Catalog(items, np.zeros((len(labels), 8, 8), np.uint8), "category")


def test_split_counts_legend_sits_beside_the_bars():
    fig = plots.plot_split_counts(catalog(["Shirt"] * 30 + ["Bag"] * 12 + ["Sandal"] * 6))
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert not any(overlaps(legend, bar.get_window_extent()) for bar in ax.patches)


def test_map_bars_have_human_titles_and_the_legend_hides_no_bar():
    summary = pd.DataFrame([{"model": m, "protocol": protocol, "relevance": "category", "distance": "euclidean",
                             "k": k, "map_report": v} for m, v in (("lite0-frozen", 0.97), ("lite0-cosface", 0.99))
                            for k in (1, 5, 10) for protocol in ("catalogue", "test split")])
    fig = plots.plot_map_bars(summary, "category", "map_report", "euclidean")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert "map report" not in ax.get_title() + ax.get_ylabel()
    assert ax.get_ylabel() == "mAP@k (the report's definition)"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["lite0-frozen", "lite0-cosface"]  # the run's order
    assert not any(overlaps(legend.get_window_extent(), bar.get_window_extent()) for bar in ax.patches)


def test_learning_curves_name_the_measure_and_explain_a_flat_frozen_phase():
    history = pd.DataFrame({"epoch": range(4), "loss": [2.0, 1.5, 1.2, 1.0],
                            "val_map_at_10": [0.6, 0.6, 0.7, 0.72], "phase": ["frozen"] * 2 + ["unfrozen"] * 2})
    fig = plots.plot_learning_curves({"lite0-softmax": history}, "val_map_at_10")
    validation = fig.axes[1]
    assert validation.get_ylabel() == "validation mAP@10"
    assert any("backbone is frozen" in t.get_text() for t in validation.texts)
    moving = history.assign(val_map_at_10=[0.5, 0.6, 0.7, 0.72])
    assert not plots.plot_learning_curves({"lite0-cosface": moving}, "val_map_at_10").axes[1].texts


def test_05_shows_the_worst_categories_first_then_the_best():
    per_category = pd.DataFrame({"queries": [40, 1, 30, 50], "a": [0.9, 0.55, 0.7, 0.99],
                                 "b": [0.8, 0.5, 0.75, 0.97]}, index=["Bag", "Shirt", "Coat", "Trouser"])
    picked = worst_and_best_categories(per_category, 4)
    assert [name for name, _ in picked] == ["Shirt", "Coat", "Trouser", "Bag"]
    assert picked[0][1] == np.mean([0.55, 0.5])
    test = catalog(["Bag", "Shirt", "Coat", "Trouser"] * 6)
    rows = pick_queries(test, 4, seed=0, categories=[name for name, _ in picked])
    assert test.items["category"].iloc[rows].tolist() == ["Shirt", "Coat", "Trouser", "Bag"]
    queries, notes = showcase_queries(test, per_category, 4, seed=0, k=10)
    assert queries == rows and notes[0] == "category mAP@10 0.53"
    assert showcase_queries(test, pd.DataFrame(), 2, seed=0, k=10)[1] is None  # no scores: no notes


def test_confusions_count_wrong_results_per_label_pair_most_frequent_first():
    from fashion_search.pipeline.evaluate import confusions

    labels = np.array(["Shirt", "Shirt", "Tee", "Tee", "Bag"])
    neighbours = np.array([[2, 1], [3, 0], [0, 3], [2, 1], [0, 2]])  # rows ranked, self excluded
    table = confusions(labels, neighbours, k=2)
    first = table.iloc[0]
    assert (first["query_label"], first["result_label"], first["count"]) == ("Shirt", "Tee", 2)
    assert first["share"] == 2 / 4  # two Shirt queries × two slots
    assert labels[int(first["query"])] == "Shirt" and labels[int(first["result"])] == "Tee"
    assert set(zip(table["query_label"], table["result_label"])) == {("Shirt", "Tee"), ("Tee", "Shirt"),
                                                                      ("Bag", "Shirt"), ("Bag", "Tee")}
    assert table["count"].sum() == 6
    test = catalog(list(labels))
    fig = plots.plot_confusions(test, {"a": table, "b": table.iloc[2:]}, 2, n=3)
    assert len(fig.axes) == 2 * 3 + 2 * 2  # one row per model, a query and a result per confusion
    assert fig.axes[1].get_title() == "returned: Tee" and fig.axes[1].texts[0].get_text() == "50% of Shirt's top 2"
    width, height = fig.get_size_inches()
    assert height < 4 and width < 10  # every model in one short figure, not one tall column each


def test_confusion_shares_put_each_models_worst_pairs_side_by_side():
    from fashion_search.pipeline.evaluate import confusion_shares

    frozen = pd.DataFrame({"query_label": ["Coat", "Tee"], "result_label": ["Shirt", "Shirt"], "share": [0.3, 0.1]})
    tuned = pd.DataFrame({"query_label": ["Bag", "Coat"], "result_label": ["Tee", "Shirt"], "share": [0.2, 0.1]})
    shares = confusion_shares({"frozen": frozen, "tuned": tuned}, n=1)
    assert shares.index.tolist() == ["Coat → Shirt", "Bag → Tee"]  # each model's worst, most shared first
    assert shares.loc["Coat → Shirt"].tolist() == [0.3, 0.1] and shares.loc["Bag → Tee"].tolist() == [0.0, 0.2]


def test_map_bars_show_each_bars_interval_and_label_it_above_the_interval():
    summary = pd.DataFrame([{"model": m, "protocol": "catalogue", "relevance": "category", "distance": "euclidean",
                             "k": k, "map_report": v, "map_report_low": v - 0.05, "map_report_high": v + 0.02}
                            for m, v in (("frozen", 0.6), ("cosface", 0.8)) for k in (1, 10)])
    fig = plots.plot_map_bars(summary, "category")
    fig.canvas.draw()
    ax = fig.axes[0]
    caps = [line for line in ax.lines if len(line.get_ydata()) > 1]
    tops = sorted(float(y) for line in caps for y in line.get_ydata())
    assert tops == pytest.approx(sorted([0.55, 0.62] * 2 + [0.75, 0.82] * 2))  # low and high caps of each bar
    labels = {t.get_text(): t.get_position()[1] for t in ax.texts}
    assert labels["0.60"] == pytest.approx(0.63) and labels["0.80"] == pytest.approx(0.83)  # above the high cap
    assert "95% bootstrap interval" in ax.get_title()


def test_the_sample_grid_has_no_blank_band_under_its_title():
    names = [f"category {n}" for n in range(10)]  # ten rows, as Fashion-MNIST's: the band grew with them
    samples = catalog([name for name in names for _ in range(6)])
    samples.items["label"] = samples.items["category"].map({name: n for n, name in enumerate(names)})
    fig = plots.plot_catalog_samples(samples, per_class=4)
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent()
    top_row = max(ax.get_window_extent().y1 for ax in fig.axes)
    row_height = fig.axes[0].get_window_extent().height
    assert 0 <= title.y0 - top_row < 0.3 * row_height


def test_queries_of_the_test_split_can_show_results_from_the_whole_catalogue():
    from fashion_search.pipeline.evaluate import confusions

    whole = catalog(["Shirt", "Tee", "Bag", "Shirt", "Tee", "Bag"])
    test = whole.subset("test")                            # rows 2 and 5 of the catalogue: two bags
    neighbours = np.array([[5, 0], [2, 1]])                 # catalogue rows
    table = confusions(test.items["category"].to_numpy(), neighbours, 2, whole.items["category"].to_numpy())
    assert table[["query_label", "result_label", "count"]].values.tolist() == [["Bag", "Shirt", 1], ["Bag", "Tee", 1]]
    fig = plots.plot_query_results(test, neighbours, [0, 1], 2, gallery=whole)
    assert [ax.get_title() for ax in fig.axes[1:3]] == ["1. Bag", "2. Shirt"]
    fig = plots.plot_confusions(test, {"m": table}, 2, gallery=whole)
    assert fig.axes[1].get_title() == "returned: Shirt"


def test_learning_curves_draw_the_fused_recipes_two_heads_as_two_lines():
    history = pd.DataFrame({"head": ["type"] * 3 + ["colour"] * 3, "epoch": [0, 1, 2] * 2,
                            "loss": [3.0, 2.0, 1.5, 4.0, 3.0, 2.5], "val_map_at_10": [0.6, 0.7, 0.72, 0.3, 0.4, 0.45]})
    fig = plots.plot_learning_curves({"lite0-fused": history}, "val_map_at_10")
    lines = fig.axes[1].get_lines()
    assert [line.get_label() for line in lines] == ["type head", "colour head"]
    assert lines[1].get_ydata().tolist() == [0.3, 0.4, 0.45]


def test_the_per_category_table_counts_the_queries_behind_each_row():
    from fashion_search.pipeline.report import per_category_table

    frame = pd.DataFrame({"colour": ["Red", "Red", "Blue"], "ap_report@10": [1.0, 0.5, 0.2]})
    table = per_category_table({"m1": frame, "m2": frame.assign(**{"ap_report@10": [0.0, 0.5, 0.4]})}, "colour",
                               "ap_report@10")
    assert table.index.tolist() == ["Blue", "Red"]  # worst mean first
    assert table["queries"].tolist() == [1, 2] and table.loc["Red", "m1"] == 0.75


def test_the_colour_weight_figure_draws_each_score_and_marks_the_choice():
    table = pd.DataFrame({"colour_weight": [0.0, 0.5, 1.0], "type report": [0.8, 0.78, 0.7],
                          "type+colour report": [0.3, 0.45, 0.5], "mean": [0.55, 0.615, 0.6]})
    fig = plots.plot_colour_weights({"lite0-fused": (table, 0.5)})
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:3] == ["type report", "type+colour report", "mean (what chooses)"]
    assert list(ax.get_lines()[-1].get_xdata()) == [0.5, 0.5]  # the vertical line at the chosen weight
    assert any("chosen: 0.5" in text.get_text() for text in ax.texts)


def test_model_confusions_read_each_models_saved_catalogue_ranking(tmp_path):
    from fashion_search.pipeline.evaluate import Ranking, model_confusions, save_ranking

    whole = catalog(["Shirt", "Tee", "Bag", "Shirt", "Tee", "Bag"])
    test = whole.subset("test")                            # catalogue rows 2 and 5: two bags
    for model, neighbours in (("a", [[5, 0], [2, 1]]), ("b", [[5, 2], [2, 5]])):
        save_ranking(Ranking(model, "cosine", np.array(neighbours), np.zeros((2, 2)), "catalogue"), tmp_path)
    confused = model_confusions(tmp_path, ["a", "b"], "cosine", test, whole, 2)
    assert confused["a"][["query_label", "result_label"]].values.tolist() == [["Bag", "Shirt"], ["Bag", "Tee"]]
    assert confused["b"].empty  # every result a bag
