"""The one fit contract every trainer follows.

Hyperparameters go to the constructor, data to ``fit`` (Surprise's ``AlgoBase``,
cornac's ``Recommender``); ``fit`` returns the :class:`~recsys_utils.models.factors.FactorModel`
that evaluation, recommendation and exploration use, whoever trained it::

    fm = BiasBaseline(reg_user=5).fit(train)              # closed form
    fm = KerasRatingModel(TrainParams(epochs=20)).fit(train, valid)  # early-stopped on valid

What a trainer learned beyond the factor model (fitted biases, a Keras model, a training
history) stays on the trainer as attributes ending in ``_``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError
from recsys_utils.models.factors import FactorModel

__all__ = ["Trainer"]


class Trainer(ABC):
    """A model family with fixed hyperparameters; ``fit`` turns data into a :class:`FactorModel`."""

    #: Shown in tables and plots, and the name of the fitted FactorModel.
    name: str = "model"
    #: Whether the fitted model's scores are stars (False for ranking-only scorers).
    predicts_ratings: bool = True

    @abstractmethod
    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Fit on ``train`` (and stop early or tune on ``valid`` where the trainer can)."""

    @staticmethod
    def check_train(train: EncodedRatings) -> EncodedRatings:
        """``train`` if it is :class:`EncodedRatings` holding at least one rating, else ParameterError."""
        if not isinstance(train, EncodedRatings):
            raise ParameterError(
                f"train: found {type(train).__name__}, expected EncodedRatings "
                "(EncodedRatings.from_frame(df, n_users, n_products) builds one from an encoded split)"
            )
        if len(train) == 0:
            raise ParameterError("no training rows (0 ratings): expected at least one")
        return train

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_"))
        return f"{type(self).__name__}({params})"
