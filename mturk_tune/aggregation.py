"""Aggregate crowd answers into one label or score per item, with a confidence and per-worker skills.

Every aggregator reads one long table with columns ``task, worker, label`` (one row per answer, extra
columns ignored), in the style of crowd-kit: classes with sklearn-like ``fit`` / ``fit_predict`` whose
fitted attributes end in an underscore, plus one entry point for the CLI::

    result = aggregate(answers, "dawid_skene")
    result.items    # task, label, confidence, n, spread
    result.workers  # worker, skill, n (+ method-specific columns)

Families:

* categorical (labels are classes; any hashable values): ``majority_vote``, ``wawa``, ``dawid_skene``,
  ``mace``, ``glad``. ``items.label`` is the winning class, ``confidence`` its posterior probability.
* numeric (labels are numbers): ``mean``, ``median``, ``weighted_mean``, and ``ordinal_ds`` for Likert
  ratings. ``items.label`` is a float score.
* pairwise: ``bradley_terry`` (see :class:`BradleyTerry` for the input convention).

The EM models share one engine (:class:`_ConfusionEM`): each answer's likelihood depends only on
(worker, given label, true class), so the E-step is one sparse product ``answers x log-confusion`` and
the M-step works on the expected count tensor ``S[worker, given, true]``, also one sparse product. No
Python loop runs over answers or tasks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import sparse, special

from mturk_tune.errors import ConfigError, InputFileError

ANSWER_COLUMNS = ("task", "worker", "label")
ITEM_COLUMNS = ["task", "label", "confidence", "n", "spread"]
WORKER_COLUMNS = ["worker", "skill", "n"]

# Floor for probabilities inside logs: the value crowd-kit clips to, so unsmoothed Dawid-Skene matches it.
_EPS = 1e-10


@dataclass
class AggregationResult:
    """What an aggregator found.

    items: one row per task: ``task, label, confidence, n, spread``. ``label`` is the winning class
        (categorical methods) or a float score (numeric and pairwise methods); ``confidence`` is in [0, 1];
        ``n`` is the number of answers; ``spread`` is the standard deviation of the answers (numeric) or
        one minus the share of the most frequent answer (categorical).
    workers: one row per worker: ``worker, skill, n`` plus method-specific columns. ``skill`` is in [0, 1],
        higher is better; its meaning per method is documented on each class.
    method: the key of :data:`METHODS` that produced it.
    params: the hyperparameters used.
    """

    items: pd.DataFrame
    workers: pd.DataFrame
    method: str
    params: dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Validation and integer encoding


def validate_answers(answers: Any, *, columns: tuple[str, ...] = ANSWER_COLUMNS, what: str = "answers") -> pd.DataFrame:
    """Check the table has the columns, rows and no missing values an aggregator needs; return it."""
    if not isinstance(answers, pd.DataFrame):
        raise InputFileError(
            f"{what} must be a pandas DataFrame with columns {', '.join(columns)}; got {type(answers).__name__}"
        )
    missing = [c for c in columns if c not in answers.columns]
    if missing:
        raise InputFileError(
            f"{what} table lacks column(s) {', '.join(missing)}; expected columns {', '.join(columns)} "
            f"(found: {', '.join(map(str, answers.columns)) or 'none'})"
        )
    if len(answers) == 0:
        raise InputFileError(f"{what} table is empty: at least one answer is needed")
    for column in columns:
        missing_rows = answers[column].isna().to_numpy()
        if missing_rows.any():
            first = int(np.flatnonzero(missing_rows)[0])
            raise InputFileError(
                f"{what} table has {int(missing_rows.sum())} missing value(s) in column {column!r} "
                f"(first at row {first}); drop or fill them before aggregating"
            )
    return answers


def _numeric_labels(labels: pd.Series, method: str) -> np.ndarray:
    """Labels as float64, or an error that says which method needs numbers and what was found."""
    if pd.api.types.is_bool_dtype(labels):
        return labels.to_numpy(dtype=np.float64)
    converted = pd.to_numeric(labels, errors="coerce")
    bad = converted.isna().to_numpy()
    if bad.any():
        example = labels.iloc[int(np.flatnonzero(bad)[0])]
        raise InputFileError(
            f"method {method!r} needs numeric labels, but column 'label' holds {example!r}; "
            "use a categorical method such as majority_vote or dawid_skene, or map labels to numbers"
        )
    values = converted.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputFileError(f"method {method!r} needs finite labels; column 'label' holds inf")
    return values


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes in sorted order of the values, so results do not depend on row order."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed types that cannot be compared: keep first-seen order
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


@dataclass(frozen=True)
class EncodedAnswers:
    """Answers as integer codes: ``task[i]``, ``worker[i]`` index into ``tasks`` and ``workers``."""

    task: np.ndarray
    worker: np.ndarray
    tasks: pd.Index
    workers: pd.Index

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    def answers_per_task(self) -> np.ndarray:
        return np.bincount(self.task, minlength=self.n_tasks)

    def answers_per_worker(self) -> np.ndarray:
        return np.bincount(self.worker, minlength=self.n_workers)


@dataclass(frozen=True)
class CategoricalAnswers(EncodedAnswers):
    """Encoded answers whose labels are class codes into ``classes``."""

    label: np.ndarray
    classes: pd.Index

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def vote_counts(self) -> np.ndarray:
        """(tasks, classes) number of answers giving each class."""
        k = self.n_classes
        counts = np.bincount(self.task * k + self.label, minlength=self.n_tasks * k)
        return counts.reshape(self.n_tasks, k).astype(float)

    def answer_matrix(self) -> sparse.csr_array:
        """(tasks, workers*classes) counts: row t has a 1 in column ``w*K + y`` for each answer (t, w, y)."""
        k = self.n_classes
        ones = np.ones(len(self.task))
        return sparse.csr_array(
            (ones, (self.task, self.worker * k + self.label)), shape=(self.n_tasks, self.n_workers * k)
        )


@dataclass(frozen=True)
class NumericAnswers(EncodedAnswers):
    """Encoded answers with float labels."""

    value: np.ndarray


def encode_categorical(answers: pd.DataFrame) -> CategoricalAnswers:
    answers = validate_answers(answers)
    task, tasks = _factorize(answers["task"])
    worker, workers = _factorize(answers["worker"])
    label, classes = _factorize(answers["label"])
    return CategoricalAnswers(task, worker, tasks, workers, label, classes)


def encode_numeric(answers: pd.DataFrame, method: str) -> NumericAnswers:
    answers = validate_answers(answers)
    value = _numeric_labels(answers["label"], method)
    task, tasks = _factorize(answers["task"])
    worker, workers = _factorize(answers["worker"])
    return NumericAnswers(task, worker, tasks, workers, value)


# --------------------------------------------------------------------------------------------------
# Shared pieces


def _normalize_rows(scores: np.ndarray) -> np.ndarray:
    total = scores.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    return scores / total


def _row_max(matrix: np.ndarray) -> np.ndarray:
    """Row maxima; for few columns a loop over columns is twice as fast as ``max(axis=1)``."""
    if matrix.shape[1] > 16:
        return matrix.max(axis=1)
    top = matrix[:, 0].copy()
    for column in range(1, matrix.shape[1]):
        np.maximum(top, matrix[:, column], out=top)
    return top


def _posterior_from_log(log_like: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalize log-likelihood rows in place into probabilities; also return the total log evidence."""
    top = _row_max(log_like)
    log_like -= top[:, None]
    np.exp(log_like, out=log_like)
    total = np.einsum("ij->i", log_like)  # 5x faster than sum(axis=1) for few columns, and no BLAS threads
    log_like /= total[:, None]
    return log_like, float(np.log(total).sum() + top.sum())


def _within_tolerance(standard_error: np.ndarray, tolerance: float) -> np.ndarray:
    """P(|error| <= tolerance) for a normal error with this standard error (1 where the error is 0)."""
    with np.errstate(divide="ignore"):
        return special.erf(tolerance / (np.sqrt(2.0) * standard_error))


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"aggregation parameter {name!r} {message}")


def _default_tolerance(values: np.ndarray) -> float:
    """An eighth of the label range: half a point on a 1-5 Likert scale."""
    span = float(values.max() - values.min())
    return span / 8.0 if span > 0 else 0.5


class Aggregator:
    """Base class: ``fit(answers) -> self``; ``fit_predict(answers) -> labels_``; ``result()``.

    Subclasses are dataclasses whose fields are the hyperparameters. After ``fit`` every aggregator has
    ``labels_`` (a Series indexed by task), ``confidence_`` (same index), ``skills_`` (a Series indexed
    by worker), and ``items_`` / ``workers_`` (the frames that :meth:`result` returns).
    """

    name: ClassVar[str] = ""

    def fit(self, answers: pd.DataFrame) -> "Aggregator":
        raise NotImplementedError

    def fit_predict(self, answers: pd.DataFrame) -> pd.Series:
        """Fit and return ``labels_``: one label or score per task."""
        return self.fit(answers).labels_

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def result(self) -> AggregationResult:
        if not hasattr(self, "items_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(answers) first")
        return AggregationResult(self.items_.copy(), self.workers_.copy(), self.name, self.params())

    # Helpers for subclasses -----------------------------------------------------------------------

    def _store(self, tasks: pd.Index, label: Any, confidence: np.ndarray, n: np.ndarray, spread: np.ndarray,
               workers: pd.Index, skill: np.ndarray, worker_n: np.ndarray, **worker_extra: np.ndarray) -> None:
        task_index = pd.Index(tasks, name="task")
        self.labels_ = pd.Series(label, index=task_index, name="label")
        self.confidence_ = pd.Series(np.clip(confidence, 0.0, 1.0), index=task_index, name="confidence")
        self.items_ = pd.DataFrame({
            "task": tasks,
            "label": label,
            "confidence": self.confidence_.to_numpy(),
            "n": np.asarray(n, dtype=np.int64),
            "spread": np.asarray(spread, dtype=float),
        })
        worker_index = pd.Index(workers, name="worker")
        self.skills_ = pd.Series(np.clip(skill, 0.0, 1.0), index=worker_index, name="skill")
        self.workers_ = pd.DataFrame({
            "worker": workers,
            "skill": self.skills_.to_numpy(),
            "n": np.asarray(worker_n, dtype=np.int64),
            **worker_extra,
        })


# --------------------------------------------------------------------------------------------------
# Categorical aggregators


class CategoricalAggregator(Aggregator):
    """Base for aggregators whose labels are classes. Adds ``probas_``: a (task x class) DataFrame."""

    def fit(self, answers: pd.DataFrame) -> "CategoricalAggregator":
        data = encode_categorical(answers)
        probas, skill, extra = self._fit_codes(data)
        self._store_categorical(data, probas, skill, extra)
        return self

    def _fit_codes(self, data: CategoricalAnswers) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _confidence(self, data: CategoricalAnswers, probas: np.ndarray, votes: np.ndarray) -> np.ndarray:
        return probas.max(axis=1)

    def _store_categorical(self, data: CategoricalAnswers, probas: np.ndarray, skill: np.ndarray,
                           extra: dict[str, np.ndarray]) -> None:
        votes = data.vote_counts()
        n = votes.sum(axis=1)
        winner = probas.argmax(axis=1)  # ties go to the first class in sorted order
        self.probas_ = pd.DataFrame(probas, index=pd.Index(data.tasks, name="task"),
                                    columns=pd.Index(data.classes, name="label"))
        self.classes_ = data.classes
        self._store(
            data.tasks, data.classes.take(winner).to_numpy(), self._confidence(data, probas, votes), n,
            1.0 - votes.max(axis=1) / n, data.workers, skill, data.answers_per_worker(), **extra,
        )


def _agreement_with(data: CategoricalAnswers, winner: np.ndarray) -> np.ndarray:
    """Each worker's share of answers equal to the task's winning class."""
    hits = (data.label == winner[data.task]).astype(float)
    return np.bincount(data.worker, weights=hits, minlength=data.n_workers) / data.answers_per_worker()


@dataclass
class MajorityVote(CategoricalAggregator):
    """The most frequent answer per task; ties go to the first class in sorted order.

    ``confidence`` is the Laplace-smoothed share of the winning class, ``(votes + 1) / (n + K)``, so a
    single answer is never reported as certain. ``skill`` is the worker's share of answers that equal
    the majority label.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "a", "b"], "worker": ["w1", "w2", "w3", "w1"],
        ...                         "label": ["cat", "cat", "dog", "dog"]})
        >>> MajorityVote().fit_predict(answers).to_dict()
        {'a': 'cat', 'b': 'dog'}
    """

    name: ClassVar[str] = "majority_vote"

    def _fit_codes(self, data):
        votes = data.vote_counts()
        probas = _normalize_rows(votes)
        return probas, _agreement_with(data, probas.argmax(axis=1)), {}

    def _confidence(self, data, probas, votes):
        return (votes.max(axis=1) + 1.0) / (votes.sum(axis=1) + data.n_classes)


@dataclass
class Wawa(CategoricalAggregator):
    """Worker Agreement With Aggregate: a majority vote weighted by each worker's agreement with the
    plain majority vote (one round, as in crowd-kit's ``Wawa``).

    ``skill`` is the agreement with the plain majority; ``confidence`` is the winning share of the
    weighted vote, smoothed like :class:`MajorityVote` with the mean skill as one pseudo-vote per class.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "a", "b", "b", "b"],
        ...                         "worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
        ...                         "label": [1, 1, 0, 0, 0, 1]})
        >>> Wawa().fit_predict(answers).to_dict()
        {'a': 1, 'b': 0}
    """

    name: ClassVar[str] = "wawa"

    def _fit_codes(self, data):
        skill = _agreement_with(data, data.vote_counts().argmax(axis=1))
        k = data.n_classes
        scores = np.bincount(data.task * k + data.label, weights=skill[data.worker],
                             minlength=data.n_tasks * k).reshape(data.n_tasks, k)
        self._pseudo_vote = float(skill.mean())
        self._scores = scores
        return _normalize_rows(scores), skill, {}

    def _confidence(self, data, probas, votes):
        scores = self._scores
        prior = self._pseudo_vote
        return (scores.max(axis=1) + prior) / (scores.sum(axis=1) + data.n_classes * prior)


class _ConfusionEM(CategoricalAggregator):
    """EM for models where an answer's likelihood depends only on (worker, given label, true class).

    E-step: ``log_like = A @ log_confusion`` with ``A`` the sparse (task x worker*class) answer matrix.
    M-step: the subclass turns the expected counts ``S[w, y, c] = sum over w's answers y of P(task=c)``
    (one sparse product ``A.T @ probas``) into new log-confusion tables ``[w, y, c] = log P(y | c)`` and
    log class priors. Starting from majority-vote shares, each iteration is M then E, as in crowd-kit.
    Subclasses set ``n_iter`` and ``tol`` fields.
    """

    n_iter: int
    tol: float

    def _start(self, data: CategoricalAnswers) -> None:
        """Set up per-fit parameter state before the first M-step."""

    def _m_step(self, data: CategoricalAnswers, expected: np.ndarray, probas: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _worker_summary(self, data: CategoricalAnswers) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _fit_codes(self, data):
        _check(self.n_iter >= 1, "n_iter", f"must be at least 1, got {self.n_iter}")
        _check(self.tol >= 0, "tol", f"must be >= 0 (0 runs all n_iter iterations), got {self.tol}")
        w, k = data.n_workers, data.n_classes
        answers = data.answer_matrix()
        by_worker_label = answers.T.tocsr()
        probas = _normalize_rows(data.vote_counts())
        self._start(data)
        previous = -np.inf
        self.log_likelihood_history_: list[float] = []
        for _ in range(self.n_iter):
            expected = np.asarray(by_worker_label @ probas).reshape(w, k, k)
            log_confusion, log_prior = self._m_step(data, expected, probas)
            log_like = np.asarray(answers @ log_confusion.reshape(w * k, k))
            log_like += log_prior
            probas, evidence = _posterior_from_log(log_like)
            per_answer = evidence / len(data.task)
            self.log_likelihood_history_.append(per_answer)
            if self.tol > 0 and per_answer - previous < self.tol:
                break
            previous = per_answer
        self.n_iter_ = len(self.log_likelihood_history_)
        self.priors_ = pd.Series(np.exp(log_prior), index=pd.Index(data.classes, name="label"), name="prior")
        skill, extra = self._worker_summary(data)
        return probas, skill, extra


def _class_log_prior(probas: np.ndarray, smoothing: float) -> np.ndarray:
    counts = np.einsum("ij->j", probas) + smoothing  # 5x faster than sum(axis=0) for few columns
    return np.log(np.maximum(counts / counts.sum(), _EPS))


@dataclass
class DawidSkene(_ConfusionEM):
    """Dawid-Skene (1979): each worker has a full confusion matrix ``P(given label | true class)``.

    ``errors_`` is a (worker, given, true) array; ``skill`` is the worker's expected accuracy under the
    class priors, ``sum_c prior_c * errors_[w, c, c]``. With ``smoothing=0`` it follows crowd-kit's
    ``DawidSkene`` step for step (majority-vote start, probabilities floored at 1e-10), so both reach the
    same labels after the same number of iterations.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "a", "b", "b", "b"],
        ...                         "worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
        ...                         "label": ["yes", "yes", "no", "no", "no", "no"]})
        >>> DawidSkene().fit_predict(answers).to_dict()
        {'a': 'yes', 'b': 'no'}
    """

    name: ClassVar[str] = "dawid_skene"

    n_iter: int = 100
    """Maximum number of EM iterations."""
    tol: float = 1e-6
    """Stop when the log-likelihood per answer improves by less than this; 0 runs all ``n_iter``."""
    smoothing: float = 0.1
    """Pseudo-count added to every confusion-matrix cell before normalizing, so a worker with few answers
    keeps some probability for every mistake. 0 reproduces classic Dawid-Skene (and crowd-kit)."""

    def _m_step(self, data, expected, probas):
        _check(self.smoothing >= 0, "smoothing", f"must be >= 0, got {self.smoothing}")
        counts = expected + self.smoothing if self.smoothing > 0 else np.maximum(expected, _EPS)
        self.errors_ = counts / counts.sum(axis=1, keepdims=True)
        return np.log(np.maximum(self.errors_, _EPS)), _class_log_prior(probas, 0.0)

    def _worker_summary(self, data):
        diagonal = np.diagonal(self.errors_, axis1=1, axis2=2)  # (workers, classes)
        return diagonal @ self.priors_.to_numpy(), {}


@dataclass
class MACE(_ConfusionEM):
    """MACE (Hovy et al. 2013): each worker answers correctly with probability ``competence`` and
    otherwise guesses from a personal distribution over labels (which catches both random clickers and
    workers who always pick the same answer). Fitted by EM with Beta/Dirichlet pseudo-counts, from a
    deterministic majority-vote start.

    ``skill`` is the competence; ``workers`` also has ``spam_label``: the label the worker favours when
    guessing.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "a", "b", "b", "b"],
        ...                         "worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
        ...                         "label": [1, 1, 0, 0, 0, 0]})
        >>> MACE().fit_predict(answers).to_dict()
        {'a': 1, 'b': 0}
    """

    name: ClassVar[str] = "mace"

    n_iter: int = 100
    """Maximum number of EM iterations."""
    tol: float = 1e-5
    """Stop when the log-likelihood per answer improves by less than this; 0 runs all ``n_iter``."""
    competence_prior: tuple[float, float] = (2.0, 1.0)
    """Beta pseudo-counts (competent, guessing) added to each worker's expected counts."""
    guess_smoothing: float = 0.5
    """Dirichlet pseudo-count per label for each worker's guessing distribution."""

    def _start(self, data):
        self._competence = np.full(data.n_workers, 0.5)
        self._guess = np.full((data.n_workers, data.n_classes), 1.0 / data.n_classes)

    def _m_step(self, data, expected, probas):
        a, b = self.competence_prior
        _check(a >= 0 and b >= 0, "competence_prior", f"must be two non-negative numbers, got {self.competence_prior}")
        _check(self.guess_smoothing >= 0, "guess_smoothing", f"must be >= 0, got {self.guess_smoothing}")
        theta, guess = self._competence[:, None], self._guess
        agree = np.diagonal(expected, axis1=1, axis2=2)  # (w, y): mass where given label == true class
        competent_share = theta / (theta + (1.0 - theta) * guess)
        competent = agree * competent_share
        guessed = expected.sum(axis=2) - competent  # (w, y) mass explained by guessing
        n = expected.sum(axis=(1, 2))
        self._competence = (competent.sum(axis=1) + a) / (n + a + b)
        self._guess = _normalize_rows(guessed + self.guess_smoothing)
        theta = self._competence[:, None, None]
        k = data.n_classes
        confusion = (1.0 - theta) * self._guess[:, :, None] + theta * np.eye(k)[None, :, :]
        return np.log(np.maximum(confusion, _EPS)), _class_log_prior(probas, 1.0)

    def _worker_summary(self, data):
        return self._competence, {"spam_label": data.classes.take(self._guess.argmax(axis=1)).to_numpy()}


@dataclass
class GLAD(CategoricalAggregator):
    """GLAD (Whitehill et al. 2009): ``P(correct) = sigmoid(alpha_worker * beta_task)`` with worker
    ability ``alpha`` (negative for adversarial workers) and task easiness ``beta > 0``; wrong answers are
    spread evenly over the other classes. EM with a few diagonal-Newton steps per M-step, Gaussian priors
    on ``alpha`` and ``log beta``.

    ``skill`` is ``sigmoid(alpha)``, the chance of a correct answer on a task of average easiness;
    ``workers`` also has ``alpha``; ``difficulty_`` is ``1 / beta`` per task.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "a", "b", "b", "b"],
        ...                         "worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
        ...                         "label": [1, 1, 0, 0, 0, 0]})
        >>> GLAD().fit_predict(answers).to_dict()
        {'a': 1, 'b': 0}
    """

    name: ClassVar[str] = "glad"

    n_iter: int = 100
    """Maximum number of EM iterations."""
    tol: float = 1e-5
    """Stop when the log-likelihood per answer improves by less than this; 0 runs all ``n_iter``."""
    newton_steps: int = 5
    """Diagonal Newton steps on (alpha, log beta) per M-step."""
    alpha_prior: tuple[float, float] = (1.0, 1.0)
    """Mean and variance of the Gaussian prior on worker ability alpha."""
    log_beta_prior: tuple[float, float] = (0.0, 1.0)
    """Mean and variance of the Gaussian prior on log task easiness."""
    learn_class_prior: bool = False
    """Estimate class frequencies; off (uniform), as in the GLAD paper: on real data a learned prior lets
    the symmetric GLAD noise model drift toward the majority class."""

    def _fit_codes(self, data):
        _check(self.n_iter >= 1, "n_iter", f"must be at least 1, got {self.n_iter}")
        _check(self.tol >= 0, "tol", f"must be >= 0 (0 runs all n_iter iterations), got {self.tol}")
        _check(self.newton_steps >= 1, "newton_steps", f"must be at least 1, got {self.newton_steps}")
        _check(self.alpha_prior[1] > 0 and self.log_beta_prior[1] > 0, "alpha_prior/log_beta_prior",
               "variances must be > 0")
        t, w, y, k = data.task, data.worker, data.label, data.n_classes
        n_t, n_w = data.n_tasks, data.n_workers
        alpha = np.full(n_w, self.alpha_prior[0])
        log_beta = np.full(n_t, self.log_beta_prior[0])
        probas = _normalize_rows(data.vote_counts())
        log_wrong_share = math.log(k - 1) if k > 1 else 0.0
        previous = -np.inf
        history: list[float] = []
        for _ in range(self.n_iter):
            # M-step: ascend the expected complete log-likelihood in (alpha, log beta).
            correct = probas[t, y]  # posterior that each answer is right
            for _step in range(self.newton_steps):
                alpha, log_beta = self._newton_step(correct, t, w, alpha, log_beta, n_t, n_w)
            log_prior = _class_log_prior(probas, 1.0) if self.learn_class_prior else np.full(k, -math.log(k))
            # E-step.
            x = alpha[w] * np.exp(log_beta[t])
            log_right = -np.logaddexp(0.0, -x)
            log_wrong = -np.logaddexp(0.0, x) - log_wrong_share
            log_like = np.bincount(t, weights=log_wrong, minlength=n_t)[:, None] + np.bincount(
                t * k + y, weights=log_right - log_wrong, minlength=n_t * k).reshape(n_t, k)
            log_like += log_prior
            probas, evidence = _posterior_from_log(log_like)
            history.append(evidence / len(t))
            if self.tol > 0 and history[-1] - previous < self.tol:
                break
            previous = history[-1]
        self.log_likelihood_history_ = history
        self.n_iter_ = len(history)
        self.alphas_ = pd.Series(alpha, index=pd.Index(data.workers, name="worker"), name="alpha")
        self.difficulty_ = pd.Series(np.exp(-log_beta), index=pd.Index(data.tasks, name="task"), name="difficulty")
        return probas, special.expit(alpha), {"alpha": alpha}

    def _newton_step(self, correct, t, w, alpha, log_beta, n_t, n_w):
        beta = np.exp(log_beta)
        x = alpha[w] * beta[t]
        p = special.expit(x)
        residual = correct - p
        curvature = p * (1.0 - p)
        mean_a, var_a = self.alpha_prior
        mean_b, var_b = self.log_beta_prior
        grad_a = np.bincount(w, weights=residual * beta[t], minlength=n_w) - (alpha - mean_a) / var_a
        hess_a = np.bincount(w, weights=curvature * beta[t] ** 2, minlength=n_w) + 1.0 / var_a
        grad_b = np.bincount(t, weights=residual * x, minlength=n_t) - (log_beta - mean_b) / var_b
        hess_b = np.bincount(t, weights=curvature * x ** 2, minlength=n_t) + 1.0 / var_b
        # Clipped steps keep the Newton iteration stable far from the optimum.
        alpha = alpha + np.clip(grad_a / hess_a, -1.0, 1.0)
        log_beta = np.clip(log_beta + np.clip(grad_b / hess_b, -1.0, 1.0), -5.0, 5.0)
        return alpha, log_beta


# --------------------------------------------------------------------------------------------------
# Numeric aggregators


def _task_moments(data: NumericAnswers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task: answer count, mean, and sum of squared deviations."""
    n = data.answers_per_task().astype(float)
    mean = np.bincount(data.task, weights=data.value, minlength=data.n_tasks) / n
    deviation = data.value - mean[data.task]
    return n, mean, np.bincount(data.task, weights=deviation ** 2, minlength=data.n_tasks)


def _pooled_variance(n: np.ndarray, squares: np.ndarray, tolerance: float) -> float:
    """Within-task answer variance pooled over tasks; with no disagreement anywhere to learn from, assume
    one answer is off by about ``tolerance``."""
    dof = np.maximum(n - 1.0, 0.0).sum()
    pooled = squares.sum() / dof if dof > 0 else 0.0
    return pooled if pooled > 0 else tolerance ** 2


def _shrunk_standard_error(n: np.ndarray, squares: np.ndarray, prior_answers: float, tolerance: float) -> np.ndarray:
    """Standard error of a task mean, its variance shrunk toward the pooled within-task variance so that
    a task with one answer (or unanimous answers) is not reported as certain."""
    dof = np.maximum(n - 1.0, 0.0)
    pooled = _pooled_variance(n, squares, tolerance)
    variance = (squares + prior_answers * pooled) / (dof + prior_answers)
    return np.sqrt(variance / n)


class NumericAggregator(Aggregator):
    """Base for aggregators over numeric labels; ``labels_`` are float scores."""

    tolerance: float | None

    def fit(self, answers: pd.DataFrame) -> "NumericAggregator":
        data = encode_numeric(answers, self.name)
        _check(self.tolerance is None or self.tolerance > 0, "tolerance", f"must be > 0, got {self.tolerance}")
        self.tolerance_ = self.tolerance if self.tolerance is not None else _default_tolerance(data.value)
        self._fit_values(data)
        return self

    def _fit_values(self, data: NumericAnswers) -> None:
        raise NotImplementedError


def _worker_reliability(data: NumericAnswers, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per worker: mean absolute deviation from the task score, and the share of score variance
    (signal) in signal plus the worker's squared deviation."""
    deviation = data.value - score[data.task]
    count = data.answers_per_worker()
    mse = np.bincount(data.worker, weights=deviation ** 2, minlength=data.n_workers) / count
    mae = np.bincount(data.worker, weights=np.abs(deviation), minlength=data.n_workers) / count
    signal = float(np.var(score))
    skill = signal / (signal + mse) if signal > 0 else np.where(mse == 0, 1.0, 0.0)
    return mae, skill


@dataclass
class Mean(NumericAggregator):
    """The plain mean of each task's answers.

    ``skill`` is ``var(scores) / (var(scores) + worker's mean squared deviation)``: 1 for a worker who
    always gives the consensus, near 0 for noise. ``workers`` also has ``mean_abs_deviation``.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["w1", "w2", "w1"], "label": [4, 5, 2]})
        >>> Mean().fit_predict(answers).to_dict()
        {'a': 4.5, 'b': 2.0}
    """

    name: ClassVar[str] = "mean"
    tolerance: float | None = None
    """Half-width within which a score counts as right for ``confidence`` (``P(|score - truth| <=
    tolerance)`` under a normal error model); None: an eighth of the label range (0.5 on a 1-5 scale)."""
    prior_answers: float = 2.0
    """Weight, in answers, of the pooled within-task variance when estimating each task's uncertainty."""

    def _fit_values(self, data):
        n, mean, squares = _task_moments(data)
        se = _shrunk_standard_error(n, squares, self.prior_answers, self.tolerance_)
        mae, skill = _worker_reliability(data, mean)
        self._store(data.tasks, mean, _within_tolerance(se, self.tolerance_), n, np.sqrt(squares / n),
                    data.workers, skill, data.answers_per_worker(), mean_abs_deviation=mae)


@dataclass
class Median(NumericAggregator):
    """The median of each task's answers (the mean of the two middle answers for even counts): robust to
    a minority of wild answers.

    ``confidence`` uses the mean's standard error times sqrt(pi/2), the median's relative efficiency under
    normal noise; ``skill`` as in :class:`Mean`, measured from the median.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "a"], "worker": ["w1", "w2", "w3"], "label": [4, 5, 1]})
        >>> Median().fit_predict(answers).to_dict()
        {'a': 4.0}
    """

    name: ClassVar[str] = "median"
    tolerance: float | None = None
    """Half-width within which a score counts as right for ``confidence`` (``P(|score - truth| <=
    tolerance)`` under a normal error model); None: an eighth of the label range (0.5 on a 1-5 scale)."""
    prior_answers: float = 2.0
    """Weight, in answers, of the pooled within-task variance when estimating each task's uncertainty."""

    def _fit_values(self, data):
        order = np.lexsort((data.value, data.task))
        sorted_values = data.value[order]
        n = data.answers_per_task()
        start = np.concatenate(([0], np.cumsum(n)[:-1]))
        median = 0.5 * (sorted_values[start + (n - 1) // 2] + sorted_values[start + n // 2])
        n_float, _, squares = _task_moments(data)
        se = _shrunk_standard_error(n_float, squares, self.prior_answers, self.tolerance_) * math.sqrt(math.pi / 2)
        mae, skill = _worker_reliability(data, median)
        self._store(data.tasks, median, _within_tolerance(se, self.tolerance_), n, np.sqrt(squares / n_float),
                    data.workers, skill, data.answers_per_worker(), mean_abs_deviation=mae)


@dataclass
class WeightedMean(NumericAggregator):
    """Reliability-weighted mean: each worker's weight is the inverse of their noise variance, estimated
    from leave-one-out residuals (each answer against the weighted mean of the *other* answers on the
    task, so a worker cannot vouch for themselves), alternated with the task scores until stable.
    Optionally also removes each worker's constant bias.

    ``skill`` is ``var(scores) / (var(scores) + noise variance)``; ``workers`` also has ``noise_sd``,
    ``weight`` and ``bias``.

    Example:
        >>> answers = pd.DataFrame({"task": list("aaabbbccc"), "worker": ["w1", "w2", "w3"] * 3,
        ...                         "label": [4, 4, 1, 2, 2, 5, 5, 5, 2]})
        >>> WeightedMean().fit_predict(answers).round(1).to_dict()
        {'a': 3.7, 'b': 2.3, 'c': 4.7}
    """

    name: ClassVar[str] = "weighted_mean"
    tolerance: float | None = None
    """Half-width within which a score counts as right for ``confidence`` (``P(|score - truth| <=
    tolerance)`` under a normal error model); None: an eighth of the label range (0.5 on a 1-5 scale)."""
    n_iter: int = 50
    """Maximum number of alternations between task scores and worker weights."""
    tol: float = 1e-6
    """Stop when no task score moves by more than this (in label units)."""
    prior_answers: float = 2.0
    """Pseudo-answers at the pooled noise variance added to each worker's estimate, so a worker with
    few answers keeps a middling weight."""
    correct_bias: bool = False
    """Also estimate and subtract each worker's mean offset (shrunk toward 0 by ``prior_answers``)."""

    def _fit_values(self, data):
        _check(self.n_iter >= 1, "n_iter", f"must be at least 1, got {self.n_iter}")
        _check(self.prior_answers > 0, "prior_answers", f"must be > 0, got {self.prior_answers}")
        t, w, y = data.task, data.worker, data.value
        n_t, n_w = data.n_tasks, data.n_workers
        n, mean, squares = _task_moments(data)
        pooled = _pooled_variance(n, squares, self.tolerance_)
        weight = np.full(n_w, 1.0 / pooled)
        bias = np.zeros(n_w)
        score = mean
        for iteration in range(self.n_iter):
            adjusted = y - bias[w]
            answer_weight = weight[w]
            total_weight = np.bincount(t, weights=answer_weight, minlength=n_t)
            weighted_sum = np.bincount(t, weights=answer_weight * adjusted, minlength=n_t)
            new_score = weighted_sum / total_weight
            others = total_weight[t] - answer_weight
            has_others = others > 0
            others_sum = weighted_sum[t] - answer_weight * adjusted
            loo = np.where(has_others, others_sum / np.where(has_others, others, 1.0), 0.0)
            counted = has_others.astype(float)
            if self.correct_bias:
                offset = np.where(has_others, y - loo, 0.0)
                bias = np.bincount(w, weights=offset, minlength=n_w) / (
                    np.bincount(w, weights=counted, minlength=n_w) + self.prior_answers)
                bias -= bias.mean()  # the scale's origin is not identifiable: keep the average bias at 0
            residual = np.where(has_others, y - bias[w] - loo, 0.0)
            variance = (np.bincount(w, weights=residual ** 2, minlength=n_w) + self.prior_answers * pooled) / (
                np.bincount(w, weights=counted, minlength=n_w) + self.prior_answers)
            weight = 1.0 / np.maximum(variance, 1e-12 * pooled)
            moved = np.max(np.abs(new_score - score)) if iteration > 0 else np.inf
            score = new_score
            if moved < self.tol:
                break
        self.n_iter_ = iteration + 1
        se = np.sqrt(1.0 / total_weight)
        noise_sd = np.sqrt(1.0 / weight)
        signal = float(np.var(score))
        skill = signal / (signal + noise_sd ** 2) if signal > 0 else np.zeros(n_w)
        self._store(data.tasks, score, _within_tolerance(se, self.tolerance_), n, np.sqrt(squares / n),
                    data.workers, skill, data.answers_per_worker(), noise_sd=noise_sd, weight=weight / weight.max(),
                    bias=bias)


@dataclass
class OrdinalDawidSkene(_ConfusionEM):
    """Dawid-Skene for ordered ratings (Likert): confusion matrices that respect the order of the scale.

    Each worker answers, with probability ``1 - spam``, a rounded draw from ``Normal(true + bias, sd)``
    onto the scale points (so answering 4 for a true 5 is likelier than answering 1), and otherwise
    guesses from a personal distribution over the scale (random clickers, straight-liners). Three
    parameters plus a guess distribution per worker, instead of a free K x K matrix, keeps estimates
    stable with few answers per worker and corrects systematic leniency or harshness.

    Labels must be numbers; the scale points are the distinct values seen (for integer labels, every
    integer between the smallest and largest). ``labels_`` is the posterior expected score (a float);
    ``confidence`` is the posterior probability of the most likely scale point; ``probas_`` holds the
    full posterior. ``skill`` is ``(1 - spam) * var(scale) / (var(scale) + sd^2)``; ``workers`` also has
    ``bias``, ``noise_sd`` and ``spam``.

    Example:
        >>> answers = pd.DataFrame({"task": list("aaabbbccc"), "worker": ["w1", "w2", "w3"] * 3,
        ...                         "label": [5, 5, 4, 1, 1, 2, 3, 3, 3]})
        >>> OrdinalDawidSkene().fit_predict(answers).round().to_dict()
        {'a': 5.0, 'b': 1.0, 'c': 3.0}
    """

    name: ClassVar[str] = "ordinal_ds"

    n_iter: int = 100
    """Maximum number of EM iterations."""
    tol: float = 1e-6
    """Stop when the log-likelihood per answer improves by less than this; 0 runs all ``n_iter``."""
    spam_prior: tuple[float, float] = (1.0, 4.0)
    """Beta pseudo-counts (guessing, on-scale) added to each worker's expected counts."""
    guess_smoothing: float = 0.5
    """Dirichlet pseudo-count per scale point for each worker's guessing distribution."""
    prior_answers: float = 3.0
    """Pseudo-answers pulling each worker's bias toward 0 and noise toward ``prior_sd``."""
    prior_sd: float = 0.75
    """Prior noise standard deviation, in units of the median gap between scale points."""
    class_smoothing: float = 1.0
    """Pseudo-count per scale point for the prior over true scores."""

    def fit(self, answers: pd.DataFrame) -> "OrdinalDawidSkene":
        answers = validate_answers(answers)
        values = _numeric_labels(answers["label"], self.name)
        scale = np.unique(values)
        if np.all(scale == np.round(scale)) and scale[-1] - scale[0] < 200:
            scale = np.arange(scale[0], scale[-1] + 1.0)  # unused points between used ones stay on the scale
        label = np.searchsorted(scale, values)
        task, tasks = _factorize(answers["task"])
        worker, workers = _factorize(answers["worker"])
        data = CategoricalAnswers(task, worker, tasks, workers, label, pd.Index(scale))
        self.scale_ = scale
        probas, skill, extra = self._fit_codes(data)
        self._store_categorical(data, probas, skill, extra)
        expected = probas @ scale
        n = data.answers_per_task().astype(float)
        mean = np.bincount(task, weights=values, minlength=data.n_tasks) / n
        spread = np.sqrt(np.bincount(task, weights=(values - mean[task]) ** 2, minlength=data.n_tasks) / n)
        self.labels_ = pd.Series(expected, index=self.labels_.index, name="label")
        self.items_["label"] = expected
        self.items_["spread"] = spread
        return self

    def _start(self, data):
        k = data.n_classes
        self._gap = float(np.median(np.diff(self.scale_))) if k > 1 else 1.0
        self._edges = np.concatenate(([-np.inf], (self.scale_[1:] + self.scale_[:-1]) / 2.0, [np.inf]))
        self._spam = np.full(data.n_workers, 0.2)
        self._guess = np.full((data.n_workers, k), 1.0 / k)
        self._bias = np.zeros(data.n_workers)
        self._sd = np.full(data.n_workers, self.prior_sd * self._gap)

    def _on_scale(self) -> np.ndarray:
        """(w, y, c): P(answer y | true c) for a worker answering from the scale, not guessing."""
        centers = self.scale_[None, None, :] + self._bias[:, None, None]
        upper = special.ndtr((self._edges[None, 1:, None] - centers) / self._sd[:, None, None])
        lower = special.ndtr((self._edges[None, :-1, None] - centers) / self._sd[:, None, None])
        return np.maximum(upper - lower, 0.0)

    def _m_step(self, data, expected, probas):
        a, b = self.spam_prior
        _check(a >= 0 and b >= 0, "spam_prior", f"must be two non-negative numbers, got {self.spam_prior}")
        _check(self.prior_answers > 0 and self.prior_sd > 0, "prior_answers/prior_sd", "must be > 0")
        on_scale = (1.0 - self._spam)[:, None, None] * self._on_scale()
        guessing = self._spam[:, None, None] * self._guess[:, :, None]
        responsibility = on_scale / np.maximum(on_scale + guessing, 1e-300)
        scaled = expected * responsibility  # expected counts answered from the scale
        guessed = (expected * (1.0 - responsibility)).sum(axis=2)  # (w, y)
        n = expected.sum(axis=(1, 2))
        self._spam = (guessed.sum(axis=1) + a) / (n + a + b)
        self._guess = _normalize_rows(guessed + self.guess_smoothing)
        offset = self.scale_[None, :, None] - self.scale_[None, None, :]  # given minus true
        weight = scaled.sum(axis=(1, 2))
        self._bias = (scaled * offset).sum(axis=(1, 2)) / (weight + self.prior_answers)
        squared = (scaled * (offset - self._bias[:, None, None]) ** 2).sum(axis=(1, 2))
        prior_var = (self.prior_sd * self._gap) ** 2
        # Rounding to scale points adds about gap^2/12 of variance that the latent noise does not have.
        variance = (squared + self.prior_answers * prior_var) / (weight + self.prior_answers) - self._gap ** 2 / 12
        self._sd = np.sqrt(np.maximum(variance, (0.25 * self._gap) ** 2))
        confusion = ((1.0 - self._spam)[:, None, None] * self._on_scale()
                     + self._spam[:, None, None] * self._guess[:, :, None])
        return np.log(np.maximum(confusion, _EPS)), _class_log_prior(probas, self.class_smoothing)

    def _worker_summary(self, data):
        prior = self.priors_.to_numpy()
        centre = prior @ self.scale_
        signal = float(prior @ (self.scale_ - centre) ** 2)
        reliability = signal / (signal + self._sd ** 2) if signal > 0 else np.zeros_like(self._sd)
        return (1.0 - self._spam) * reliability, {"bias": self._bias, "noise_sd": self._sd, "spam": self._spam}


# --------------------------------------------------------------------------------------------------
# Pairwise comparisons


@dataclass
class BradleyTerry(Aggregator):
    """Bradley-Terry strengths from pairwise comparisons: ``P(i beats j) = p_i / (p_i + p_j)``.

    Input, either shape (one row per judgment, ``worker`` always required):

    * ``left, right, label`` (+ ``worker``): the two items compared, ``label`` the winner (equal to the
      value in ``left`` or in ``right``);
    * ``task, worker, label`` with ``task`` written ``"a|b"`` (items joined by ``pair_sep``) and ``label``
      the winner, ``a`` or ``b``: the same long shape as every other method.

    Fitted with Hunter's (2004) MM algorithm; every item also plays ``prior_games`` virtual games (half
    won, half lost) against a reference item of strength 1, which keeps strengths finite for items that
    never lose and anchors the scale. ``items.label`` is the log-strength (0 = the reference, +1 = e
    times as likely to win); ``confidence`` is ``P(|log-strength error| <= tolerance)`` from the Fisher
    information; ``n`` is the number of comparisons with the item; ``spread`` is ``sqrt(w (1 - w))`` for
    its win rate ``w``. ``skill`` is the worker's share of judgments that agree with the fitted order.

    Example:
        >>> answers = pd.DataFrame({"task": ["x|y", "x|y", "y|z", "x|z"], "worker": ["w1", "w2", "w1", "w2"],
        ...                         "label": ["x", "x", "y", "x"]})
        >>> BradleyTerry().fit_predict(answers).sort_values(ascending=False).index.tolist()
        ['x', 'y', 'z']
    """

    name: ClassVar[str] = "bradley_terry"

    n_iter: int = 500
    """Maximum number of MM iterations."""
    tol: float = 1e-8
    """Stop when no log-strength moves by more than this."""
    prior_games: float = 1.0
    """Virtual games per item against the reference item (regularization strength)."""
    pair_sep: str = "|"
    """Separator between the two items in ``task`` when ``left``/``right`` columns are absent."""
    tolerance: float = 0.5
    """Half-width, in log-strength units, used for ``confidence``."""

    def fit(self, answers: pd.DataFrame) -> "BradleyTerry":
        _check(self.prior_games > 0, "prior_games", f"must be > 0, got {self.prior_games}")
        _check(self.tolerance > 0, "tolerance", f"must be > 0, got {self.tolerance}")
        left, right, winner_is_left, worker_values = self._read_pairs(answers)
        codes, items = _factorize(pd.Series(np.concatenate([left, right])))
        n_pairs = len(left)
        left_code, right_code = codes[:n_pairs], codes[n_pairs:]
        winner = np.where(winner_is_left, left_code, right_code)
        loser = np.where(winner_is_left, right_code, left_code)
        m = len(items)
        wins = np.bincount(winner, minlength=m) + self.prior_games / 2.0
        strength = np.ones(m)
        for iteration in range(self.n_iter):
            inverse_sum = 1.0 / (strength[winner] + strength[loser])
            denominator = (np.bincount(winner, weights=inverse_sum, minlength=m)
                           + np.bincount(loser, weights=inverse_sum, minlength=m)
                           + self.prior_games / (strength + 1.0))
            new_strength = wins / denominator
            moved = np.max(np.abs(np.log(new_strength) - np.log(strength)))
            strength = new_strength
            if moved < self.tol:
                break
        self.n_iter_ = iteration + 1
        score = np.log(strength)
        p_win = strength[winner] / (strength[winner] + strength[loser])
        information = (np.bincount(winner, weights=p_win * (1 - p_win), minlength=m)
                       + np.bincount(loser, weights=p_win * (1 - p_win), minlength=m)
                       + self.prior_games * strength / (strength + 1.0) ** 2)
        games = np.bincount(winner, minlength=m) + np.bincount(loser, minlength=m)
        win_rate = np.bincount(winner, minlength=m) / np.maximum(games, 1)
        worker_code, workers = _factorize(pd.Series(worker_values))
        agrees = (score[winner] >= score[loser]).astype(float)
        worker_n = np.bincount(worker_code, minlength=len(workers))
        skill = np.bincount(worker_code, weights=agrees, minlength=len(workers)) / worker_n
        self.strengths_ = pd.Series(strength, index=pd.Index(items, name="task"), name="strength")
        self._store(items, score, _within_tolerance(1.0 / np.sqrt(information), self.tolerance), games,
                    np.sqrt(win_rate * (1 - win_rate)), workers, skill, worker_n)
        return self

    def _read_pairs(self, answers: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(answers, pd.DataFrame) and {"left", "right"} <= set(answers.columns):
            answers = validate_answers(answers, columns=("left", "right", "worker", "label"), what="comparisons")
            left = answers["left"].astype(str).to_numpy()
            right = answers["right"].astype(str).to_numpy()
        else:
            answers = validate_answers(answers, what="comparisons")
            parts = answers["task"].astype(str).str.split(self.pair_sep, n=1, expand=True, regex=False)
            if parts.shape[1] < 2 or parts[1].isna().any():
                row = 0 if parts.shape[1] < 2 else int(np.flatnonzero(parts[1].isna().to_numpy())[0])
                raise InputFileError(
                    f"bradley_terry needs pairs: task {answers['task'].iloc[row]!r} (row {row}) is not written "
                    f"'a{self.pair_sep}b'; give columns left, right, label or tasks like 'a{self.pair_sep}b'"
                )
            left, right = parts[0].to_numpy(dtype=str), parts[1].to_numpy(dtype=str)
        label = answers["label"].astype(str).to_numpy()
        winner_is_left = label == left
        invalid = ~winner_is_left & (label != right)
        if invalid.any():
            row = int(np.flatnonzero(invalid)[0])
            raise InputFileError(
                f"bradley_terry: label {label[row]!r} at row {row} is neither of the compared items "
                f"{left[row]!r} and {right[row]!r}; the label must name the winner"
            )
        same = left == right
        if same.any():
            row = int(np.flatnonzero(same)[0])
            raise InputFileError(f"bradley_terry: row {row} compares item {left[row]!r} with itself")
        return left, right, winner_is_left, answers["worker"].to_numpy()


# --------------------------------------------------------------------------------------------------
# Registry and entry point


METHODS: dict[str, type[Aggregator]] = {
    cls.name: cls
    for cls in (MajorityVote, Wawa, DawidSkene, MACE, GLAD, Mean, Median, WeightedMean, OrdinalDawidSkene,
                BradleyTerry)
}
"""Method name -> aggregator class; every key works through :func:`aggregate`."""

CATEGORICAL_METHODS = sorted(k for k, v in METHODS.items() if issubclass(v, CategoricalAggregator)
                             and v is not OrdinalDawidSkene)
NUMERIC_METHODS = sorted(k for k, v in METHODS.items() if issubclass(v, NumericAggregator) or v is OrdinalDawidSkene)


def make_aggregator(method: str, **params: Any) -> Aggregator:
    """Build the aggregator for ``method`` with ``params``, naming an unknown method or parameter."""
    if method not in METHODS:
        raise ConfigError(f"unknown aggregation method {method!r}; choose one of: {', '.join(sorted(METHODS))}")
    cls = METHODS[method]
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(
            f"aggregation method {method!r} has no parameter {unknown[0]!r}; "
            f"its parameters are: {', '.join(known) or 'none'}"
        )
    try:
        return cls(**params)
    except TypeError as error:  # pragma: no cover - dataclass init only fails on unknown names, caught above
        raise ConfigError(f"aggregation method {method!r}: {error}") from None


def aggregate(answers: pd.DataFrame, method: str = "mean", **params: Any) -> AggregationResult:
    """Aggregate a long ``task, worker, label`` table with one of :data:`METHODS`.

    Example:
        >>> answers = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["w1", "w2", "w1"], "label": [4, 5, 2]})
        >>> aggregate(answers, "mean").items[["task", "label", "n"]].to_dict("list")
        {'task': ['a', 'b'], 'label': [4.5, 2.0], 'n': [2, 1]}
    """
    return make_aggregator(method, **params).fit(answers).result()
