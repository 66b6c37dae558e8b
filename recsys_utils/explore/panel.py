"""The JupyterLab panel: pick a user, see their top-N and why, live.

Shown only where a notebook frontend drives the kernel (:func:`live_frontend`);
papermill runs and HTML reports get static tables instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from recsys_utils.constants import DEFAULT_PRODUCT_COL
from recsys_utils.errors import ParameterError, UnknownIDError, positive_int
from recsys_utils.explore.explorer import Explorer
from recsys_utils.models.factors import FactorModel
from recsys_utils.retrieval.serve import recommend_for_user

__all__ = ["live_frontend", "recommendation_panel"]


def live_frontend() -> bool:
    """True when this code runs in a kernel that a notebook frontend is driving.

    JupyterLab (3+), Notebook 7 and VS Code send a ``cellId`` in the metadata of each
    execute request; nbclient (hence papermill and ``nbconvert --execute``) does not, and
    plain Python or IPython has no kernel at all. Only a live frontend can draw a widget
    and run its callbacks, so widgets are displayed only then; reports get static output.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return False
    try:
        parent = kernel.get_parent("shell")
    except TypeError:  # pragma: no cover - ipykernel < 6.? without the channel argument
        parent = kernel.get_parent()
    return "cellId" in ((parent or {}).get("metadata") or {})


def _recommend_view(explorer: Explorer, user_id: str, n: int, n_explain: int,
                    rating_model: FactorModel | None) -> list[Any]:
    """What the panel shows for one user: markdown and tables, as display objects."""
    from IPython.display import Markdown

    rating_model = explorer.rating_model if rating_model is None else rating_model
    recs = recommend_for_user(explorer.factor_model, explorer.encoders, explorer.stats.ratings, user_id, n,
                              rating_model=rating_model)
    why = explorer.explanations_table(user_id, recs[DEFAULT_PRODUCT_COL].tolist(), n_explain)
    return [
        Markdown(f"**Top {len(recs)} for {user_id}**"),
        recs,
        Markdown(f"**Why**: what dominates each score ({explorer.factor_model.name}'s parts against their "
                 f"averages), its exact parts, and the {n_explain} rated products most similar to each"),
        why,
    ]


def recommendation_panel(explorer: Explorer, user_ids: Sequence[str], top_n: int = 10, *, n_explain: int = 3,
                         rating_model: FactorModel | None = None):
    """An ipywidgets panel: pick a user (dropdown or typed ID) and N, see top-N and explanations.

    Parameters
    ----------
    explorer : Explorer
        The trained model, its encoders and training ratings.
    user_ids : sequence of str
        The users offered in the dropdown (the first is shown first).
    top_n : int, default 10
        The slider's starting value.
    n_explain : int, default 3
        Rated products per explanation.
    rating_model : FactorModel, optional
        Gives the stars shown next to each product when the explorer's model ranks only
        (default: the explorer's own ``rating_model``).

    Returns
    -------
    ipywidgets.VBox
        With attributes ``dropdown``, ``text``, ``slider`` and ``output`` (an
        ``ipywidgets.Output`` whose ``outputs`` hold what is shown) and ``redraw()``.
        Typing an ID in the text box and pressing Enter shows that user; an unknown ID
        shows the error message instead.
    """
    import ipywidgets as widgets
    from IPython.core.formatters import format_display_data

    user_ids = [str(u) for u in user_ids]
    if not user_ids:
        raise ParameterError("user_ids: found an empty list, expected at least one user for the dropdown")
    top_n = positive_int("top_n", top_n)
    dropdown = widgets.Dropdown(options=user_ids, value=user_ids[0], description="user")
    text = widgets.Text(value="", placeholder="or type a user ID + Enter", description="user ID",
                        continuous_update=False)  # value changes on Enter or leaving the box
    slider = widgets.IntSlider(value=top_n, min=1, max=max(50, top_n), description="top N")
    output = widgets.Output()
    state = {"user": user_ids[0]}

    def redraw(*_: Any) -> None:
        try:
            shown = _recommend_view(explorer, state["user"], slider.value, n_explain, rating_model)
        except (UnknownIDError, ParameterError) as exc:
            from IPython.display import Markdown

            shown = [Markdown(f"{type(exc).__name__}: {exc}")]
        outputs = []
        with pd.option_context("display.max_colwidth", None):  # the "because" column in full
            for obj in shown:
                data, metadata = format_display_data(obj)
                outputs.append({"output_type": "display_data", "data": data, "metadata": metadata})
        output.outputs = tuple(outputs)

    def on_dropdown(change: dict) -> None:
        state["user"] = change["new"]
        redraw()

    def on_text(_: Any) -> None:
        if text.value.strip():
            state["user"] = text.value.strip()
            redraw()

    dropdown.observe(on_dropdown, names="value")
    slider.observe(lambda change: redraw(), names="value")
    text.observe(on_text, names="value")
    panel = widgets.VBox([widgets.HBox([dropdown, text, slider]), output])
    panel.dropdown, panel.text, panel.slider, panel.output, panel.redraw = dropdown, text, slider, output, redraw
    redraw()
    return panel
