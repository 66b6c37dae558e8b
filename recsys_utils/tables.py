"""The tables the reports show: pandas Stylers with readable names, fixed decimals, the best value marked.

Like :mod:`recsys_utils.plots`, functions take plain tables and return something a
notebook displays (here a :class:`pandas.io.formats.style.Styler`, rendered as HTML in
JupyterLab and in the reports). Files keep the raw values and short keys; only what is
shown is formatted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from recsys_utils.constants import metric_label, model_label

__all__ = ["DECIMALS", "LOWER_IS_BETTER", "decimals_for", "metrics_table", "paired_table", "paired_verdict", "show",
           "summary"]

#: Decimals shown per metric (the part before any ``@k``); counts get thousands separators.
DECIMALS = {
    "rmse": 4, "mae": 4, "precision": 4, "recall": 4, "ndcg": 4, "map": 4, "hit_rate": 3, "mrr": 4,
    "coverage": 3, "novelty": 2, "top1_share": 3, "list_overlap": 3, "mean_log_popularity": 2,
    "catalog_log_popularity": 2,
}
#: Metrics where a smaller value is better (the rest: larger is better, or no "best" at all).
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
#: Metrics with no better direction: shown, never marked.
_NEUTRAL = frozenset({"coverage", "novelty", "mean_log_popularity", "catalog_log_popularity", "n",
                      "n_users_evaluated"})
#: Personalisation metrics: smaller means more personal lists.
_SMALLER_IS_MORE_PERSONAL = frozenset({"top1_share", "list_overlap"})

_BEST = "font-weight:700;background-color:#e6f4ea"


def decimals_for(column: str, default: int = 3) -> int:
    """Decimals to show for a metric column (``ndcg@10`` -> 4)."""
    return DECIMALS.get(column.partition("@")[0], default)


def _formatter(series: pd.Series, decimals: int, *, whole_as_int: bool = False):
    if pd.api.types.is_bool_dtype(series):
        return lambda v: "yes" if v else "no"
    if pd.api.types.is_integer_dtype(series):
        return "{:,}"
    if pd.api.types.is_float_dtype(series):
        values = series.dropna().to_numpy()
        if values.size and np.all(values == np.round(values)) and (whole_as_int or np.abs(values).max() >= 1000):
            return "{:,.0f}"
        return f"{{:,.{decimals}f}}"
    if pd.api.types.is_datetime64_any_dtype(series):
        at_midnight = series.dropna().dt.normalize().eq(series.dropna()).all()
        return (lambda v: "" if pd.isna(v) else v.strftime("%Y-%m-%d" if at_midnight else "%Y-%m-%d %H:%M"))
    return None


def show(df: pd.DataFrame, *, decimals: int | Mapping[str, int] = 3, index: bool = False,
         caption: str | None = None, wrap: Iterable[str] = ()) -> Styler:
    """Any table, formatted for reading: thousands separators, ``decimals`` per float column
    (one number or a mapping by column), dates without midnight times, no meaningless index.

    ``index=True`` keeps a meaningful index (a name or a model). ``wrap``: text columns shown
    whole, wrapped, instead of one long line.
    """
    styler = df.style
    for col in df.columns:
        d = decimals.get(str(col), 3) if isinstance(decimals, Mapping) else decimals
        fmt = _formatter(df[col], d, whole_as_int=True)  # whole stars as 5, not 5.000
        if fmt is not None:
            styler = styler.format(fmt, subset=[col], na_rep="–")
    if not index:
        styler = styler.hide(axis="index")
    for col in wrap:
        if col in df.columns:
            styler = styler.set_properties(subset=[col], **{"white-space": "pre-wrap", "max-width": "36em",
                                                            "text-align": "left"})
    styles = [{"selector": "td", "props": "font-variant-numeric: tabular-nums; padding: 0.25em 0.6em"},
              {"selector": "th", "props": "padding: 0.25em 0.6em"}]
    if caption:
        styler = styler.set_caption(caption)
        styles.append({"selector": "caption", "props": "caption-side: top; text-align: left; color: #444"})
    return styler.set_table_styles(styles, overwrite=False)


def metrics_table(df: pd.DataFrame, *, model_col: str = "model", mark_best: bool = True,
                  caption: str | None = None, floors: Iterable[str] = ("random",)) -> Styler:
    """A table with one row per model and one column per metric, formatted and labelled.

    Rows get readable model names (``mf_bias`` -> "rating model (dot product + biases)"),
    columns readable metric names with ``@k`` kept, each metric its own fixed decimals, and the
    best value of every metric with a direction is marked (lowest RMSE/MAE, lowest
    ``top1_share``/``list_overlap`` = most personal, highest otherwise) among the models that
    are not ``floors`` (random lists are the most "personal" and mean nothing). ``model_col``
    may be a column or the index's name.
    """
    table = df.reset_index() if model_col not in df.columns and df.index.name == model_col else df.copy()
    if model_col not in table.columns:
        raise KeyError(f"metrics_table: no {model_col!r} column or index in {list(df.columns)}")
    table = table.set_index(model_col)
    contenders = ~table.index.isin(list(floors))
    table.index = [model_label(str(m)) for m in table.index]
    styler = table.style
    for col in table.columns:
        fmt = _formatter(table[col], decimals_for(str(col)))
        if fmt is not None:
            styler = styler.format(fmt, subset=[col], na_rep="–")
    if mark_best:
        for col in table.columns:
            base = str(col).partition("@")[0]
            values = pd.to_numeric(table[col], errors="coerce").where(contenders)
            if base in _NEUTRAL or values.notna().sum() < 2 or not pd.api.types.is_numeric_dtype(table[col]):
                continue
            best = values.min() if base in LOWER_IS_BETTER | _SMALLER_IS_MORE_PERSONAL else values.max()
            marks = np.where(values.eq(best).to_numpy(), _BEST, "")
            styler = styler.apply(lambda s, m=marks: m, subset=[col])
    styler = styler.format_index(lambda c: metric_label(str(c)), axis="columns")
    styles = [{"selector": "td", "props": "font-variant-numeric: tabular-nums; text-align: right; "
                                          "padding: 0.25em 0.6em"},
              {"selector": "th", "props": "padding: 0.25em 0.6em"},
              {"selector": "th.row_heading", "props": "text-align: left; white-space: nowrap"}]
    if caption:
        styler = styler.set_caption(caption + (" Best value of each metric marked." if mark_best else ""))
        styles.append({"selector": "caption", "props": "caption-side: top; text-align: left; color: #444"})
    return styler.set_table_styles(styles, overwrite=False)


def paired_verdict(metric: str, difference: float, standard_error: float) -> str:
    """``better`` / ``worse`` (by more than two standard errors, in ``metric``'s better direction) or ``within noise``."""
    if not (np.isfinite(difference) and np.isfinite(standard_error)) or abs(difference) <= 2 * standard_error:
        return "within noise"
    lower = metric.partition("@")[0] in LOWER_IS_BETTER
    return "better" if (difference < 0) == lower else "worse"


def paired_table(paired: pd.DataFrame, *, caption: str | None = None) -> Styler:
    """Two models on the same rows or users (:attr:`~recsys_utils.evaluation.experiment.Evaluation.paired`):
    readable names, both values, the difference with its standard error, that difference in
    standard errors, and the verdict (:func:`paired_verdict`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        in_se = paired["difference"] / paired["standard_error"]
    table = pd.DataFrame({
        "model": paired["model"].map(model_label), "against": paired["against"].map(model_label),
        "metric": paired["metric"].map(metric_label), "model's": paired["value"],
        "against's": paired["against_value"], "difference": paired["difference"],
        "± standard error": paired["standard_error"], "in standard errors": in_se.where(paired["standard_error"] > 0),
        "verdict": [paired_verdict(m, d, e) for m, d, e in
                    zip(paired["metric"], paired["difference"], paired["standard_error"])],
        "rows or users": paired["n"].astype("int64")})
    return show(table, decimals={"model's": 4, "against's": 4, "difference": 4, "± standard error": 4,
                                 "in standard errors": 1}, caption=caption)


def _value_text(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        if float(v).is_integer() and abs(v) >= 1:
            return f"{v:,.0f}"
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3g}"
    return "–" if v is None else str(v)


def summary(columns: Mapping[str, Mapping[str, object]], *, caption: str | None = None) -> Styler:
    """Facts side by side (``{"as read": {...}, "cleaned": {...}}``), one row per key.

    Keys are shown with spaces for underscores; integers with thousands separators, floats
    with two decimals (or three significant digits below 1, so a density of 0.000833 keeps
    its digits), missing entries as a dash.
    """
    keys = list(dict.fromkeys(k for col in columns.values() for k in col))
    frame = pd.DataFrame({name: [_value_text(col.get(k)) if k in col else "–" for k in keys]
                          for name, col in columns.items()}, index=[str(k).replace("_", " ") for k in keys])
    styler = frame.style.set_table_styles(
        [{"selector": "td", "props": "text-align: right; font-variant-numeric: tabular-nums; padding: 0.25em 0.6em"},
         {"selector": "th.row_heading", "props": "text-align: left; font-weight: normal; padding: 0.25em 0.6em"},
         {"selector": "caption", "props": "caption-side: top; text-align: left; color: #444"}], overwrite=False)
    return styler.set_caption(caption) if caption else styler
