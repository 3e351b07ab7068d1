"""Membership-inference attacks on per-example statistics (scikit-learn classifiers, no hand-rolled ML).

Conventions differ between papers (reference §5.3); each function names the one it reproduces.
Members are labelled 1, non-members 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = torch.Tensor | np.ndarray


def _np(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)


def _balanced(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger of two samples (rows) to the size of the smaller; the smaller keeps its order."""
    n = min(len(a), len(b))

    def cut(x: np.ndarray) -> np.ndarray:
        return x[rng.choice(len(x), n, replace=False)] if len(x) > n else x

    return cut(a), cut(b)


def loss_mia(forget_losses: ArrayLike, test_losses: ArrayLike, *, n_splits: int = 10, seed: int = 0) -> float:
    """The NeurIPS 2023 starting-kit ``simple_mia`` (reference §4.5; ``unlearning-CIFAR10.ipynb``).

    A default ``LogisticRegression`` on the per-example cross-entropy tells forget (member, 1) from
    test (non-member, 0) examples, stacked test-first as the kit does, the larger set subsampled to
    the smaller; returns the mean accuracy over a 10-split ``StratifiedShuffleSplit`` with the kit's
    default test size (10%). Below 20 examples the test fold is widened to 2 so that it holds a member
    and a non-member (the kit's sets never are that small). Ideal: the oracle's value, ~0.5.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    f, t = _balanced(_np(forget_losses), _np(test_losses), rng)
    if len(f) < 2:
        raise ValueError("loss_mia needs at least 2 forget and 2 test examples")
    x = np.concatenate([t, f])[:, None]
    y = np.r_[np.zeros(len(t)), np.ones(len(f))]
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=max(0.1, 2 / len(x)), random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


FEATURES = ("correctness", "confidence", "entropy", "m_entropy", "max_prob")


def attack_features(logits: torch.Tensor, labels: torch.Tensor, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """Per-example attack features [N, len(features)] from logits and labels.

    ``correctness`` (top-1 == label), ``confidence`` (p_y), ``entropy`` (of p), ``m_entropy``
    (Song & Mittal 2021's modified entropy, label-aware), ``max_prob`` (top-1 probability).
    """
    p = F.softmax(logits.double(), -1)
    log_p = p.clamp_min(1e-30).log()
    p_y = p.gather(1, labels[:, None]).squeeze(1)
    onehot = F.one_hot(labels, p.shape[1]).bool()
    log_1mp = (1 - p).clamp_min(1e-30).log()
    cols = {
        "correctness": (p.argmax(1) == labels).double(),
        "confidence": p_y,
        "entropy": -(p * log_p).sum(1),
        "m_entropy": -(1 - p_y) * log_p.gather(1, labels[:, None]).squeeze(1)
        - torch.where(onehot, 0.0, p * log_1mp).sum(1),
        "max_prob": p.max(1).values,
    }
    unknown = set(features) - set(cols)
    if unknown:
        raise ValueError(f"unknown attack features {sorted(unknown)}; available: {list(cols)}")
    return torch.stack([cols[f] for f in features], 1).numpy()


def mia_efficacy(
    retain: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
) -> float:
    """SalUn / ℓ1-sparse / RUM "MIA-efficacy", computed exactly as SalUn's code does (reference §5.3;
    ``Classification/evaluation/SVC_MIA.py`` ``SVC_MIA(...)["confidence"]`` as called by ``main_forget.py``).

    Feature: the float32 softmax probability of the true label, *unscaled* (with ``gamma="auto"`` the
    RBF width is 1/n_features, so any rescaling changes the attack). Shadow members: the first |D_t|
    rows of D_r in dataset order (label 1); non-members: D_t (label 0). ``SVC(C=3, gamma="auto",
    kernel="rbf")`` then predicts D_f; returns the share predicted non-member (TN/|D_f|), in [0, 1].
    Each argument is a (logits, labels) pair in dataset order. Deterministic (no sampling).
    Ideal: the oracle's value (SalUn CIFAR-10: 12.9% random, 100% class-wise).
    """
    from sklearn.svm import SVC

    def confidence(pair: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        logits, labels = pair
        return F.softmax(logits.detach().cpu().float(), -1).gather(1, labels.cpu()[:, None]).numpy()

    shadow_in, shadow_out, target = confidence(retain)[: len(test[1])], confidence(test), confidence(forget)
    x = np.concatenate([shadow_in, shadow_out])
    y = np.concatenate([np.ones(len(shadow_in)), np.zeros(len(shadow_out))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1 - clf.predict(target).mean())


def svc_mia(
    retain: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
    *,
    features: tuple[str, ...] = FEATURES,
    seed: int = 0,
) -> float:
    """obliviate's multi-feature variant of MIA-efficacy (not a paper's number): the same RBF SVC
    (C=3) on several :func:`attack_features` at once, standardised so that no feature's scale sets
    the kernel width, with members a seeded random |D_t|-sample of D_r rather than its first rows.
    Returns the share of D_f predicted non-member. Ideal: the oracle's value."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    r, t, f = (attack_features(*pair, features=features) for pair in (retain, test, forget))
    r = r[rng.choice(len(r), min(len(r), len(t)), replace=False)]
    x = np.concatenate([r, t])
    y = np.r_[np.ones(len(r)), np.zeros(len(t))]
    clf = make_pipeline(StandardScaler(), SVC(C=3, kernel="rbf", gamma="auto")).fit(x, y)
    return float((clf.predict(f) == 0).mean())


def entropy_mia(
    retain: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int = 0,
) -> float:
    """Chundawat / SSD / SCRUB-repo MIA (SSD ``src/metrics.py``): a class-balanced logistic regression
    on prediction entropy, D_r (1) vs D_t (0); returns the fraction of D_f predicted *member*.
    Ideal: the oracle's value (low)."""
    from sklearn.linear_model import LogisticRegression

    r, t, f = (attack_features(*pair, features=("entropy",)) for pair in (retain, test, forget))
    x = np.concatenate([r, t])
    y = np.r_[np.ones(len(r)), np.zeros(len(t))]
    clf = LogisticRegression(class_weight="balanced", random_state=seed).fit(x, y)
    return float(clf.predict(f).mean())


def threshold_attack(member_scores: ArrayLike, nonmember_scores: ArrayLike) -> dict[str, float]:
    """A threshold attack on a scalar score (higher = more likely member, e.g. −loss).

    Returns ROC ``auc``, ``tpr@1%fpr``, ``tpr@0.1%fpr`` (Carlini et al.'s low-FPR regime; the
    TPR at the largest threshold whose FPR stays within the bound) and ``best_acc`` (the balanced
    accuracy of the best threshold). Ideal: the oracle's; chance is AUC 0.5.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    m, n = _np(member_scores).ravel(), _np(nonmember_scores).ravel()
    if len(m) == 0 or len(n) == 0:
        raise ValueError("threshold_attack needs member and non-member scores")
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    s = np.r_[m, n]
    fpr, tpr, _ = roc_curve(y, s)

    def tpr_at(bound: float) -> float:
        return float(tpr[fpr <= bound].max())

    return {
        "auc": float(roc_auc_score(y, s)),
        "tpr@1%fpr": tpr_at(0.01),
        "tpr@0.1%fpr": tpr_at(0.001),
        "best_acc": float((0.5 * (tpr + 1 - fpr)).max()),
    }
