"""How good are the models? Metric kernels, and the experiment that compares models.

- :mod:`~recsys_utils.evaluation.metrics`: RMSE/MAE, ranking metrics at K (means or per user), error by
  activity (pure functions).
- :mod:`~recsys_utils.evaluation.experiment`: every model on the same split → :class:`Evaluation` → ``metrics.json``;
  two models' paired differences with their standard errors.
"""

from __future__ import annotations

from recsys_utils.evaluation.experiment import Evaluation, evaluate, paired_differences, predict_with_fallback
from recsys_utils.evaluation.metrics import (error_by_bucket, mae, ranking_metrics, ranking_metrics_by_user,
                                             rating_metrics, rmse)

__all__ = ["Evaluation", "error_by_bucket", "evaluate", "mae", "paired_differences", "predict_with_fallback",
           "ranking_metrics", "ranking_metrics_by_user", "rating_metrics", "rmse"]
