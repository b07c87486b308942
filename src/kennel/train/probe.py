"""What a wholly frozen EfficientNet-Lite (``freeze_backbone``) trains on: each training
image's pooled embedding, computed once through ONNX Runtime (:mod:`kennel.train.embeddings`),
and how its linear classifier is fitted: an L2-regularised logistic regression (scikit-learn,
L-BFGS to convergence) on standardised embeddings, its strength chosen by cross-validation on
the training embeddings, then folded into the model's own classifier layer (``fit``). A model
that averages flips is validated on the mean of both views (as it is, mirrored), as it will
predict.

Why not epochs of AdamW on the raw embeddings, as the probe first did: on the 10k set's Lite2
320 px embeddings the same linear model fitted this way scored 98.60–98.65 % on the untouched
test split against 98.25 % (README, Build): unscaled embeddings and a few noisy epochs chosen
on 800 validation photos left it short of the convex optimum. The fit is deterministic, needs no
learning rate, and takes seconds, so ``lr``, ``weight_decay``, ``epochs`` and ``patience`` do not
apply to a probe.

The probe trains on each image as it is, whatever ``augment`` says: a mirrored copy of every
training image measured no better (5-fold cross-validation over the 8,000 train + validation
photos of the 10k set at 256 px: 98.54 % without, 98.56 % with) and costs a second pass of the
frozen network over the training split, time better spent on a larger input size. (Under a
letterbox frame policy the probe does not add a letterboxed view either, as the partly frozen
path of :mod:`kennel.train.features` does.)"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from kennel.config import TrainConfig
from kennel.errors import TrainingError
from kennel.progress import Event, Progress
from kennel.train import embeddings
from kennel.train.data import ImageSet
from kennel.train.models import EfficientNetLite


def inputs(
    model: EfficientNetLite,
    cfg: TrainConfig,
    data: ImageSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    progress: Progress,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train embeddings, their labels, validation embeddings, their labels); validation
    embeddings are the mean of both views when the model averages flips."""
    val_views = 2 if cfg.tta_flip else 1
    total = len(train_idx) + len(val_idx) * val_views
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(Event("cache frozen features", done=done, total=total))

    def encode(indices: np.ndarray, mirrored: bool) -> torch.Tensor:
        out = embeddings.embeddings(model, data.images, indices, mirrored=mirrored, step=step)
        return torch.from_numpy(np.array(out))  # a copy: the memo's array is read-only

    train = encode(train_idx, False)
    val = encode(val_idx, False)
    if val_views == 2:
        val = (val + encode(val_idx, True)) / 2
    labels = torch.from_numpy(data.labels)
    return train, labels[train_idx], val, labels[val_idx]


# inverse regularisation strengths tried, weakest penalty last; 5-fold CV over the 10k set's
# Lite2 320 px embeddings put its optimum at 0.003 and scored 0.001–0.01 within 0.06 points
C_GRID = (0.001, 0.003, 0.01, 0.03)
FOLDS = 5
C_DEFAULT = 0.003  # too few images of a class to cross-validate
# training settings a fitted probe has no use for: a search over only these changes nothing
IGNORED = frozenset(
    {"lr", "weight_decay", "epochs", "patience", "batch_size", "label_smoothing", "dropout",
     "augment", "schedule", "frozen_blocks"}
)  # fmt: skip


def fitted(params: Mapping[str, object]) -> bool:
    """Whether a run with these recorded settings is a linear probe (fitted in one step, so
    it writes no checkpoint: resuming it fits it again)."""
    return bool(params.get("freeze_backbone")) and str(params.get("arch", "")).startswith(
        "efficientnet_lite"
    )


def narrowed(config: TrainConfig) -> tuple[TrainConfig, tuple[str, ...]]:
    """``config`` searching only what its training uses, and the keys dropped from its space.
    A linear probe (a wholly frozen Lite model, in every trial: the space sets neither
    ``arch`` nor ``freeze_backbone``) has no use for the keys in ``IGNORED``: trials differing
    only in those would train the same model and record settings that changed nothing."""
    space = config.search.space
    if not fitted(config.model_dump()) or {"arch", "freeze_backbone"} & set(space):
        return config, ()
    dropped = tuple(sorted(k for k in space if k in IGNORED))
    if not dropped:
        return config, ()
    kept = {k: v for k, v in space.items() if k not in IGNORED}
    search = config.search.model_copy(update={"space": kept})
    return config.model_copy(update={"search": search}), dropped


@dataclass(frozen=True)
class Fitted:
    c: float
    cv_accuracy: float | None  # None: too few images to cross-validate
    train_loss: float
    val_loss: float
    val_accuracy: float


def fit(
    model: EfficientNetLite,
    train: torch.Tensor,
    train_y: torch.Tensor,
    val: torch.Tensor,
    val_y: torch.Tensor,
) -> Fitted:
    """Fit the classifier of ``model`` on standardised embeddings and write it, with the
    standardisation folded in, into ``model._fc`` (the exported graph is unchanged)."""
    x = train.numpy().astype(np.float64)
    y = train_y.numpy()
    present = np.unique(y)
    if len(present) < 2:
        raise TrainingError("a linear probe needs training images of at least two classes")
    c, cv = _choose_c(x, y)
    mean, scale = _moments(x)
    coef, intercept = _logistic(((x - mean) / scale), y, c)
    classes = int(model._fc.out_features)
    weight = np.zeros((classes, x.shape[1]))
    bias = np.zeros(classes)
    if len(present) == 2 and coef.shape[0] == 1:  # scikit-learn's one row for two classes
        weight[present[0]], weight[present[1]] = -coef[0] / 2, coef[0] / 2
        bias[present[0]], bias[present[1]] = -intercept[0] / 2, intercept[0] / 2
    else:
        weight[present], bias[present] = coef, intercept
    bias[np.setdiff1d(np.arange(classes), present)] = -1e4  # never seen: never predicted
    folded = weight / scale
    with torch.no_grad():
        model._fc.weight.copy_(torch.from_numpy(folded))
        model._fc.bias.copy_(torch.from_numpy(bias - folded @ mean))
    with torch.no_grad():
        train_loss = float(F.cross_entropy(model._fc(train.float()), train_y))
        if len(val_y) == 0:
            return Fitted(c, cv, train_loss, 0.0, 0.0)
        logits = model._fc(val.float())
        loss = float(F.cross_entropy(logits, val_y))
        accuracy = float((logits.argmax(1) == val_y).float().mean())
    return Fitted(c, cv, train_loss, loss, accuracy)


def _choose_c(x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
    """The grid's C with the best mean accuracy over stratified folds (each standardised on
    its own training part); remembered for the process, as a search's trials and the final
    run fit the same embeddings."""
    key = hashlib.sha256(np.ascontiguousarray(x).tobytes() + y.astype(np.int64).tobytes())
    memo = key.hexdigest()
    if memo in _CHOSEN:
        return _CHOSEN[memo]
    counts = np.bincount(y)
    folds = min(FOLDS, int(counts[counts > 0].min()))
    if folds < 2 or len(counts[counts > 0]) < 2:
        return C_DEFAULT, None
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(C_GRID))
    for fit_idx, held in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        mean, scale = _moments(x[fit_idx])
        part, other = (x[fit_idx] - mean) / scale, (x[held] - mean) / scale
        for i, c in enumerate(C_GRID):
            coef, intercept = _logistic(part, y[fit_idx], c)
            z = other @ coef.T + intercept
            guess = (z[:, 0] > 0).astype(int) if coef.shape[0] == 1 else z.argmax(1)
            labels = np.unique(y[fit_idx])
            scores[i] += float((labels[guess] == y[held]).mean()) / folds
    best = int(np.argmax(scores))  # ties: the stronger penalty, first in the grid
    chosen = (C_GRID[best], float(scores[best]))
    _CHOSEN[memo] = chosen
    while len(_CHOSEN) > 8:
        _CHOSEN.popitem(last=False)
    return chosen


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (1 where a dimension is constant)."""
    scale = x.std(0)
    scale[scale < 1e-12] = 1.0
    return x.mean(0), scale


def _logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # within 1e-4 of the optimum
        model = LogisticRegression(C=c, max_iter=1000, tol=1e-4).fit(x, y)
    return np.asarray(model.coef_), np.asarray(model.intercept_)


_CHOSEN: OrderedDict[str, tuple[float, float | None]] = OrderedDict()
