"""Looking inside a trained model: similar products, explanations, embedding maps, planted checks, a live panel.

- :mod:`~recsys_utils.explore.explorer`: :class:`Explorer` (similar products, explanations,
  embedding maps; owns the arrays derived from the model and the training ratings).
- :mod:`~recsys_utils.explore.explain`: :class:`Explanation`, which part of a score dominates, in words.
- :mod:`~recsys_utils.explore.planted`: agreement with the planted groups of the generated data.
- :mod:`~recsys_utils.explore.panel`: the ipywidgets panel for JupyterLab.
"""

from __future__ import annotations

from recsys_utils.explore.explain import Explanation
from recsys_utils.explore.explorer import MIN_NEIGHBOUR_RATINGS, Explorer
from recsys_utils.explore.panel import live_frontend, recommendation_panel
from recsys_utils.explore.planted import (
    GroupAgreement,
    explanation_group_agreement,
    group_agreement,
    planted_groups,
    read_groups,
)

__all__ = [
    "Explanation",
    "Explorer",
    "GroupAgreement",
    "MIN_NEIGHBOUR_RATINGS",
    "explanation_group_agreement",
    "group_agreement",
    "live_frontend",
    "planted_groups",
    "read_groups",
    "recommendation_panel",
]
