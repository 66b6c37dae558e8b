"""The ranking model: the same embeddings, trained on which products each user chose.

A rating model learns how much a user likes a product *given* that they rate it; ordering
a whole catalog asks which products the user will choose at all. This model answers the
second question with the seed's architecture — a user embedding, a product embedding,
their dot product plus a product bias, and a sigmoid that reads as the probability that
the user chooses the product — trained on implicit feedback: every rated (user, product)
pair is a positive, whatever its stars; a pair rated at or above the relevance threshold
(the products the user liked, the ones the ranking metrics count) weighs ``liked_weight``
times as much in the loss, its L2 term included, as a pair rated below it.

Objective: a sampled softmax. For each positive pair the product competes with
``negatives`` products drawn uniformly from the catalog (one draw shared by a batch), so
the loss asks "which of these did the user pick?" (with every negative there, a full
softmax over the catalog). Uniform negatives let the product bias learn popularity while
the dot product learns taste. A per-rating L2 penalty on the user and positive product
rows keeps rare rows small. Training follows the fast engine: each epoch is one
XLA-compiled loop over batches, and Adam moves only the rows a batch touched
(:func:`~recsys_utils.models.keras.fast.sparse_adam`). After every epoch the model is
scored on the validation split by NDCG@K (:class:`~recsys_utils.models.validation.HeldOutRanking`);
training stops when that stops improving and the best epoch's weights are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.models.base import Trainer
from recsys_utils.models.factors import FactorModel
from recsys_utils.models.keras import fast
from recsys_utils.models.keras.fast import BETA_1, BETA_2, adam_moments, epoch_batches, last_positions, sparse_adam
from recsys_utils.models.keras.layers import PRODUCT_BIAS, PRODUCT_EMBEDDING, USER_EMBEDDING, import_keras
from recsys_utils.models.validation import HeldOutRanking

__all__ = ["RankingParams", "RankingResult", "KerasRankingModel", "build_ranking_model", "ranking_factor_model",
           "pair_weights"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankingParams:
    """Every hyperparameter of the ranking model, with its default (written only here).

    Parameters
    ----------
    embedding_dim : int
        Size of the user and product embeddings.
    l2 : tuple of float
        Candidate strengths of the per-rating L2 on the user row and the positive product
        row of each pair. With validation rows the model is trained once per candidate and
        the one with the best validation NDCG@K is kept (sparse data wants stronger L2:
        0.2 on Musical Instruments, 0.05 on MovieLens); without them the first is used.
    liked_weight : float
        Weight in the loss of a pair rated at or above ``relevance_threshold`` (a liked
        product), against 1 for a pair rated below it: every rated product was chosen, the
        liked ones are what the top-N should find first. 1: every pair alike.
    negatives : int
        Products drawn uniformly (with replacement) per batch to compete with each positive,
        at most the catalog size minus one.
    epochs, batch_size, learning_rate : int, int, float
        Most epochs, positive pairs per Adam step, Adam's learning rate.
    patience : int
        Epochs without a better validation NDCG@K before stopping (best weights kept).
    k, relevance_threshold : int, float
        The validation metric: NDCG@``k`` of held-out ratings at or above the threshold.
    max_validation_users : int
        Users ranked for the validation metric each epoch (a seeded sample beyond that).
    seed : int
        Seeds initialisation, shuffling and the negatives.
    """

    embedding_dim: int = 32
    l2: tuple[float, ...] = (0.05, 0.2)
    liked_weight: float = 2.0
    negatives: int = 512
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 0.003
    patience: int = 8
    k: int = 10
    relevance_threshold: float = 4.0
    max_validation_users: int = 20_000
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "negatives", "epochs", "batch_size", "k", "max_validation_users"):
            positive_int(name, getattr(self, name))
        if isinstance(self.l2, (int, float)):
            object.__setattr__(self, "l2", (float(self.l2),))
        object.__setattr__(self, "l2", tuple(float(v) for v in self.l2))
        if not (self.l2 and all(v >= 0 for v in self.l2) and self.learning_rate > 0 and self.patience >= 0
                and np.isfinite(self.liked_weight) and self.liked_weight > 0):
            raise ParameterError(f"l2={self.l2}, learning_rate={self.learning_rate}, patience={self.patience}, "
                                 f"liked_weight={self.liked_weight}: expected l2 >= 0, learning_rate > 0, "
                                 "patience >= 0, liked_weight > 0")


@dataclass
class RankingResult:
    """What happened while fitting the ranking model."""

    history: dict[str, list[float]]
    best_epoch: int
    seconds: float
    #: wall seconds of each epoch of the kept L2's fit, its validation check included
    epoch_seconds: list[float] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    #: The L2 kept, and the best validation NDCG@K reached with each candidate.
    l2: float = 0.0
    validation_by_l2: dict[float, float] = field(default_factory=dict)
    #: of each epoch's seconds, those the validation check took (the rest is training)
    validation_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_ranking_model(n_users: int, n_products: int, embedding_dim: int = 32, *, init_std: float = 0.05,
                        seed: int | None = None, name: str = "mf_rank"):
    """The Keras ranking model: ``sigmoid(u · p + b_p)``, the probability that the user chooses the product."""
    keras = import_keras()
    layers = keras.layers
    n_users, n_products = positive_int("n_users", n_users), positive_int("n_products", n_products)

    def init(offset: int):
        return keras.initializers.RandomNormal(stddev=init_std, seed=None if seed is None else seed + offset)

    user = keras.Input(shape=(), dtype="int32", name="user")
    product = keras.Input(shape=(), dtype="int32", name="product")
    u = layers.Embedding(n_users, embedding_dim, embeddings_initializer=init(0), name=USER_EMBEDDING)(user)
    p = layers.Embedding(n_products, embedding_dim, embeddings_initializer=init(1), name=PRODUCT_EMBEDDING)(product)
    bp = layers.Embedding(n_products, 1, embeddings_initializer="zeros", name=PRODUCT_BIAS)(product)
    score = layers.Add(name="add_bias")([layers.Dot(axes=1, name="dot")([u, p]), bp])
    out = layers.Activation("sigmoid", name="choice_probability")(score)
    return keras.Model([user, product], out, name=name)


def ranking_factor_model(model: Any) -> FactorModel:
    """A model from :func:`build_ranking_model` as a ranking-only :class:`FactorModel` (no star scale)."""
    uf = np.asarray(model.get_layer(USER_EMBEDDING).get_weights()[0], dtype=np.float32)
    pf = np.asarray(model.get_layer(PRODUCT_EMBEDDING).get_weights()[0], dtype=np.float32)
    pb = np.asarray(model.get_layer(PRODUCT_BIAS).get_weights()[0], dtype=np.float32).reshape(-1)
    return FactorModel(uf, pf, np.zeros(len(uf), np.float32), pb, 0.0, link="sigmoid", name=model.name,
                       predicts_ratings=False)


class KerasRankingModel(Trainer):
    """The ranking model as a :class:`~recsys_utils.models.base.Trainer`.

    After :meth:`fit`, ``model_`` is the Keras model and ``result_`` a :class:`RankingResult`.
    """

    name = "mf_rank"
    predicts_ratings = False

    def __init__(self, params: RankingParams | None = None, *, verbose: int = 1, **changes: Any) -> None:
        self.params = dataclasses.replace(params or RankingParams(), **changes)
        self.verbose = int(verbose)

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Train on the pairs of ``train``; stop early on NDCG@K of ``valid`` (on training loss without it),
        once per candidate L2, keeping the best."""
        train = self.check_train(train)
        prm = self.params
        check = None
        if valid is not None and len(valid):
            check = HeldOutRanking(train, valid, k=prm.k, relevance_threshold=prm.relevance_threshold,
                                   max_users=prm.max_validation_users, seed=prm.seed)
            check = check if len(check) else None
        start = time.perf_counter()
        best = None
        by_l2: dict[float, float] = {}
        pair_w = pair_weights(train.rating, prm.relevance_threshold, prm.liked_weight)  # the same for every L2
        for l2 in prm.l2 if check else prm.l2[:1]:
            model, history, best_epoch, score, seconds, checking = self._fit_one(train, check, l2, pair_w)
            by_l2[l2] = score
            if best is None or score > best[3]:
                best = (model, history, best_epoch, score, seconds, checking, l2)
        self.model_, history, best_epoch, score, seconds, checking, l2 = best
        self.result_ = RankingResult(history, best_epoch, time.perf_counter() - start, seconds,
                                     dataclasses.asdict(prm), l2, by_l2, checking)
        log.info("ranking model: l2 %g, %d epochs, best %d (%s %.4f)", l2, len(history["loss"]), best_epoch,
                 f"val_ndcg@{prm.k}" if check else "-loss", score)
        return ranking_factor_model(self.model_)

    def _fit_one(self, train: EncodedRatings, check: HeldOutRanking | None, l2: float, pair_w: np.ndarray):
        prm = self.params
        keras = import_keras()
        keras.utils.set_random_seed(prm.seed)
        model = build_ranking_model(train.n_users, train.n_products, prm.embedding_dim, seed=prm.seed, name=self.name)
        loop = _RankFit(model, prm, l2)
        rng = np.random.default_rng(prm.seed)
        monitor = f"val_ndcg@{prm.k}"
        history: dict[str, list[float]] = {"loss": [], **({monitor: []} if check else {})}
        best, best_epoch, wait, weights = -np.inf, 0, 0, None
        epoch_seconds: list[float] = []
        checking: list[float] = []
        for epoch in range(1, prm.epochs + 1):
            t = time.perf_counter()
            history["loss"].append(loop.epoch(train.user_idx, train.product_idx, rng, pair_w))
            t_check = time.perf_counter()
            score = check.ndcg(ranking_factor_model(model)) if check else -history["loss"][-1]
            if check:
                history[monitor].append(score)
            epoch_seconds.append(time.perf_counter() - t)
            checking.append(time.perf_counter() - t_check)
            if self.verbose:
                shown = f"{monitor} {score:.4f}" if check else "no validation rows: loss decides"
                print(f"l2 {l2:g} epoch {epoch}/{prm.epochs} - {epoch_seconds[-1]:.1f}s - loss "
                      f"{history['loss'][-1]:.4f} - {shown}", flush=True)
            if score > best:
                best, best_epoch, wait = score, epoch, 0
                weights = model.get_weights()
            else:
                wait += 1
                if prm.patience and wait >= prm.patience:
                    break
        model.set_weights(weights)
        return model, history, best_epoch, best, epoch_seconds, checking


def pair_weights(rating: np.ndarray, threshold: float, liked_weight: float) -> np.ndarray:
    """Each pair's weight in the ranking loss: ``liked_weight`` where ``rating >= threshold``, else 1."""
    return np.where(np.asarray(rating) >= threshold, np.float32(liked_weight), np.float32(1.0)).astype(np.float32)


class _RankFit:
    """Whole epochs of the sampled-softmax objective in one XLA call, row-sparse Adam."""

    def __init__(self, model: Any, params: RankingParams, l2: float) -> None:
        import tensorflow as tf

        self.tf = tf
        self.params = params
        self.l2 = float(l2)
        self.user = model.get_layer(USER_EMBEDDING).embeddings.value
        self.product = model.get_layer(PRODUCT_EMBEDDING).embeddings.value
        self.bias = model.get_layer(PRODUCT_BIAS).embeddings.value
        self.moments = [adam_moments(tf, v) for v in (self.user, self.product, self.bias)]
        self.owners = [tf.Variable(tf.fill([v.shape[0]], tf.constant(-1, tf.int64)), trainable=False)
                       for v in (self.user, self.product)]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.n_products = int(self.product.shape[0])
        self.n_negatives = min(params.negatives, max(self.n_products - 1, 1))
        self._steps = tf.function(self._run_steps, jit_compile=True, reduce_retracing=True)

    def _run_steps(self, users, products, negatives, weights):
        tf = self.tf
        prm = self.params
        loss_sum = tf.constant(0.0, tf.float32)
        for b in tf.range(tf.shape(users)[0]):
            u, i, j, w = users[b], products[b], negatives[b], weights[b]
            cand = tf.concat([i, j], 0)
            rows_u, rows_p = tf.gather(self.user, u), tf.gather(self.product, cand)
            rows_b = tf.gather(self.bias, cand)
            with tf.GradientTape() as tape:
                tape.watch([rows_u, rows_p, rows_b])
                n = tf.shape(i)[0]
                pos = tf.reduce_sum(rows_u * rows_p[:n], axis=1) + rows_b[:n, 0]
                neg = tf.matmul(rows_u, rows_p[n:], transpose_b=True) + rows_b[n:, 0][None, :]
                neg = tf.where(tf.equal(j[None, :], i[:, None]), -1e9, neg)  # a draw of the positive itself
                logits = tf.concat([pos[:, None], neg], 1)
                # per pair: the softmax loss plus the L2 of its user and product rows, weighted
                per_pair = (tf.reduce_logsumexp(logits, axis=1) - pos
                            + self.l2 * (tf.reduce_sum(tf.square(rows_u), 1) + tf.reduce_sum(tf.square(rows_p[:n]), 1)))
                loss = tf.reduce_sum(w * per_pair) / tf.reduce_sum(w)
            g_u, g_p, g_b = tape.gradient(loss, [rows_u, rows_p, rows_b])
            t = tf.cast(self.iterations + 1, tf.float32)
            lr_t = prm.learning_rate * tf.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
            last_u = last_positions(tf, self.owners[0], u, self.iterations)
            last_p = last_positions(tf, self.owners[1], cand, self.iterations)
            sparse_adam(tf, self.user, self.moments[0], u, g_u, last_u, lr_t)
            sparse_adam(tf, self.product, self.moments[1], cand, g_p, last_p, lr_t)
            sparse_adam(tf, self.bias, self.moments[2], cand, g_b, last_p, lr_t)
            self.iterations.assign_add(1)
            loss_sum += loss
        return loss_sum / tf.cast(tf.shape(users)[0], tf.float32)

    def epoch(self, user_idx: np.ndarray, product_idx: np.ndarray, rng: np.random.Generator,
              weights: np.ndarray | None = None) -> float:
        """One pass over the positive pairs in a fresh order; the mean loss per batch.

        ``weights``: each pair's weight (:func:`pair_weights`); all 1 when omitted.
        """
        order = epoch_batches(len(user_idx), self.params.batch_size, rng)
        negatives = rng.integers(0, self.n_products, size=(order.shape[0], self.n_negatives), dtype=np.int64)
        weights = None if weights is None else np.asarray(weights, np.float32)
        means = []  # the batches go to the compiled loop a group at a time (see _FastFit.epoch)
        for s in range(0, len(order), fast.GROUP_BATCHES):
            rows = order[s:s + fast.GROUP_BATCHES]
            w = np.ones(rows.shape, np.float32) if weights is None else weights[rows]
            means.append((float(self._steps(user_idx[rows].astype(np.int64), product_idx[rows].astype(np.int64),
                                            negatives[s:s + len(rows)], w)), len(rows)))
        return means[0][0] if len(means) == 1 else sum(m * n for m, n in means) / len(order)
