"""The report tables: readable names, fixed decimals per metric, the best value marked, no bare index."""

from __future__ import annotations

import re

import pandas as pd

from recsys_utils.constants import metric_label, model_label
from recsys_utils.tables import metrics_table, paired_table, paired_verdict, show, summary


def _cells(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    return [[re.sub(r"<[^>]+>", "", c).replace("&nbsp;", "").strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, flags=re.S)]
            for r in rows]


def _marked(html: str) -> set[str]:
    """The ids of the cells the stylesheet marks as best."""
    block = re.search(r"(#T_\w+(?:, #T_\w+)*) \{\s*font-weight: 700", html)
    return set(re.findall(r"#T_\w+?_(row\d+_col\d+)", block.group(1))) if block else set()


def test_metrics_table_names_models_and_metrics_and_marks_the_best():
    df = pd.DataFrame({"model": ["mf_bias", "bias", "random"], "rmse": [0.84123456, 1.0041, None],
                       "ndcg@10": [0.0299, 0.0301, 0.0011], "top1_share": [0.9, 0.5, 0.01],
                       "n": [17979, 17979, 17979]})
    html = metrics_table(df).to_html()
    cells = _cells(html)
    assert cells[0][1:] == [metric_label("rmse"), metric_label("ndcg@10"), metric_label("top1_share"), "rows"]
    assert [r[0] for r in cells[1:]] == [model_label("mf_bias"), model_label("bias"), model_label("random")]
    # four decimals for RMSE and NDCG, three for shares, thousands separators for counts, a dash for missing
    assert cells[1][1:] == ["0.8412", "0.0299", "0.900", "17,979"]
    assert cells[3][1] == "–"
    # lowest RMSE, highest NDCG, lowest top-1 share among non-floor models (random is not "most personal")
    assert _marked(html) == {"row0_col0", "row1_col1", "row1_col2"}


def test_metrics_table_reads_the_model_from_the_index_too():
    df = pd.DataFrame({"rmse": [1.0, 0.9]}, index=pd.Index(["bias", "mf_bias"], name="model"))
    cells = _cells(metrics_table(df).to_html())
    assert [r[0] for r in cells[1:]] == [model_label("bias"), model_label("mf_bias")]
    assert _marked(metrics_table(df).to_html()) == {"row1_col0"}


def test_show_hides_the_index_and_formats_dates_and_counts():
    df = pd.DataFrame({"rank": [1, 2], "product_id": ["B001", "B002"], "n_ratings": [1234, 5],
                       "timestamp": pd.to_datetime(["2011-10-21", "2013-03-22"], utc=True),
                       "score": [0.123456, 2.5]})
    cells = _cells(show(df, decimals=2).to_html())
    assert cells[0] == ["rank", "product_id", "n_ratings", "timestamp", "score"]  # no index column
    assert cells[1] == ["1", "B001", "1,234", "2011-10-21", "0.12"]
    timed = df.assign(timestamp=pd.to_datetime(["2011-10-21 13:45", "2013-03-22 00:00"], utc=True))
    assert _cells(show(timed).to_html())[1][3] == "2011-10-21 13:45"


def test_summary_puts_facts_side_by_side_with_readable_numbers():
    cells = _cells(summary({"as read": {"ratings": 200000, "density": 0.000833333, "mean_rating": 4.1834,
                                        "first": "2010-01-01"},
                            "cleaned": {"ratings": 179790, "density": 0.0012}}).to_html())
    assert cells[0] == ["", "as read", "cleaned"]
    assert cells[1:] == [["ratings", "200,000", "179,790"], ["density", "0.000833", "0.0012"],
                         ["mean rating", "4.18", "–"], ["first", "2010-01-01", "–"]]


def test_paired_verdict_counts_two_standard_errors_in_the_metrics_better_direction():
    assert paired_verdict("rmse", -0.021, 0.01) == "better"      # lower error, beyond 2 SE
    assert paired_verdict("ndcg@10", -0.021, 0.01) == "worse"    # lower NDCG
    assert paired_verdict("ndcg@10", 0.019, 0.01) == "within noise"
    assert paired_verdict("mae", 0.03, 0.01) == "worse"
    assert paired_verdict("rmse", 0.0, 0.0) == "within noise"    # identical models


def test_paired_table_shows_both_values_the_difference_in_standard_errors_and_the_verdict():
    df = pd.DataFrame({"model": ["mf_bias", "mf_rank_blend"], "against": ["bias", "ease"], "metric": ["rmse", "ndcg@10"],
                       "value": [0.8353, 0.1480], "against_value": [0.9993, 0.1402], "difference": [-0.164, 0.0078],
                       "standard_error": [0.004, 0.0061], "n": [17979, 9500]})
    cells = _cells(paired_table(df).to_html())
    assert cells[0][:3] == ["model", "against", "metric"] and cells[0][-2:] == ["verdict", "rows or users"]
    assert cells[1] == [model_label("mf_bias"), model_label("bias"), metric_label("rmse"), "0.8353", "0.9993",
                        "-0.1640", "0.0040", "-41.0", "better", "17,979"]
    assert cells[2][-4:] == ["0.0061", "1.3", "within noise", "9,500"]
