"""Certified removal for logistic regression (Guo, Goldstein, Hannun, van der Maaten, ICML 2020; reference B6a).

Train with a random linear term bᵀw (b ~ N(0, σ²I)) in the objective; remove points with one Newton
step on the remaining data. The step leaves a small gradient residual, bounded from the data; as
long as the accumulated bound stays under σε/c (c = √(2 log(1.5/δ))), the noise b hides it and the
result is (ε, δ)-indistinguishable from retraining without the points. When the budget is spent
the model retrains from scratch with fresh noise, and the budget resets.

Everything runs in float64 with NumPy/SciPy. Inputs are scaled so every training row has norm
<= 1, as the guarantee assumes. Multi-class data uses one-vs-rest models, each with ε/K and δ/K of
the budget, so that releasing all K together is (ε, δ)-certified.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

#: Lipschitz constant of the logistic loss's second derivative
GAMMA = 0.25


@dataclass
class Removal:
    """What one ``remove`` did: was the Newton step certified, and how much budget is left.

    ``certified`` is computed from the bound: the accumulated residual bound of every one-vs-rest
    model is finite and at most the budget σε′/c, so the Newton-step model is (ε, δ)-indistinguishable
    from a retrain and is released. Otherwise ``certified`` is False, the step is discarded and the
    model retrains from scratch on the remaining rows with fresh noise (``retrained``): the released
    model is then a fresh fit, exact rather than certified.
    """

    certified: bool
    retrained: bool
    removed: int
    residual_bound: float  # the data-dependent bound added by this removal (max over one-vs-rest models)
    accumulated_bound: float  # the Newton step's bound, before any retrain: this removal's plus the earlier ones'
    gradient_residual: float  # the actual ‖∇L(w⁻; D′)‖ before any retrain (max over models): <= accumulated_bound
    budget_left: float  # fraction of the (ε, δ) budget left, in [0, 1]
    seconds: float


def _loss_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray, lam: float, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ log(1 + exp(−y wᵀx)) + λn/2 ‖w‖² + bᵀw and its gradient (the paper's sum form)."""
    z = y * (x @ w)
    loss = np.logaddexp(0, -z).sum() + 0.5 * lam * len(y) * w @ w + b @ w
    grad = -x.T @ (y * expit(-z)) + lam * len(y) * w + b
    return float(loss), grad


def _hessian(w: np.ndarray, x: np.ndarray, lam: float) -> np.ndarray:
    s = expit(x @ w)
    return (x * (s * (1 - s))[:, None]).T @ x + lam * len(x) * np.eye(x.shape[1])


class CertifiedLogistic:
    """``CertifiedLogistic(lam, sigma, eps, delta).fit(X, y)``, ``.remove(ids)``, ``.predict_proba(X)``.

    Defaults follow the reference code (MNIST 3-vs-8: λ = 1e-3, σ = 10). ``ids`` in ``remove`` are
    rows of the ``X`` given to ``fit``. Usable as a head on frozen features (pass the features).
    """

    def __init__(
        self,
        lam: float = 1e-3,
        sigma: float = 10.0,
        eps: float = 1.0,
        delta: float = 1e-4,
        seed: int = 0,
        fit_intercept: bool = True,
    ) -> None:
        if lam <= 0 or sigma <= 0 or eps <= 0 or not 0 < delta < 1:
            raise ValueError("need lam > 0, sigma > 0, eps > 0 and 0 < delta < 1")
        self.lam, self.sigma, self.eps, self.delta = lam, sigma, eps, delta
        self.seed, self.fit_intercept = seed, fit_intercept
        self.retrains = 0

    # ---- training -----------------------------------------------------------------------------------
    def _features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64) / self.scale
        return np.hstack([x, np.full((len(x), 1), self.intercept_scale)]) if self.fit_intercept else x

    def fit(self, x: np.ndarray, y: np.ndarray) -> CertifiedLogistic:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"X must be [n, d] with one label per row; got {x.shape} and {y.shape}")
        self.classes = np.unique(y)
        if len(self.classes) < 2:
            raise ValueError("need at least two classes")
        self.intercept_scale = 1.0
        norms = np.linalg.norm(x, axis=1)
        self.scale = float(norms.max()) * (np.sqrt(2) if self.fit_intercept else 1.0) or 1.0
        self.intercept_scale = 1 / np.sqrt(2) if self.fit_intercept else 0.0  # row norm stays <= 1
        self.x, self.y = self._features(x), y
        self.alive = np.ones(len(y), dtype=bool)
        self.gram = self.x.T @ self.x  # XᵀX of the remaining rows, down-dated per removal: ‖X‖₂ in O(d³)
        k = 1 if len(self.classes) == 2 else len(self.classes)
        c = np.sqrt(2 * np.log(1.5 / (self.delta / k)))
        self.budget = self.sigma * (self.eps / k) / c  # ε′ per model
        self._train()
        return self

    def _targets(self, y: np.ndarray) -> list[np.ndarray]:
        if len(self.classes) == 2:
            return [np.where(y == self.classes[1], 1.0, -1.0)]
        return [np.where(y == c, 1.0, -1.0) for c in self.classes]

    def _train(self) -> None:
        rng = np.random.default_rng([self.seed, self.retrains])
        x, d = self.x[self.alive], int(self.x.shape[1])
        self.b, self.w = [], []
        for t in self._targets(self.y[self.alive]):
            b = rng.normal(0, self.sigma, d)
            w = minimize(
                _loss_grad,
                np.zeros(d),
                args=(x, t, self.lam, b),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 1000, "gtol": 1e-10},
            ).x
            for _ in range(8):  # Newton polish: the bounds assume the exact minimiser, L-BFGS stops short of it
                g = _loss_grad(w, x, t, self.lam, b)[1]
                if np.linalg.norm(g) < 1e-9:
                    break
                w = w - np.linalg.solve(_hessian(w, x, self.lam), g)
            self.b.append(b)
            self.w.append(w)
        self.spent = np.zeros(len(self.w))

    # ---- removal ------------------------------------------------------------------------------------
    def remove(self, ids: np.ndarray | list[int]) -> Removal:
        """Remove training rows ``ids`` with one Newton step; retrain with fresh noise if over budget."""
        start = time.perf_counter()
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(ids) == 0:
            raise ValueError("no ids to remove")
        if ids.min() < 0 or ids.max() >= len(self.alive):
            raise ValueError(f"ids out of range for {len(self.alive)} training rows")
        if not self.alive[ids].all():
            raise ValueError(f"ids already removed: {ids[~self.alive[ids]][:5].tolist()}")
        if self.alive.sum() - len(ids) < 2:
            raise ValueError("removing these would leave fewer than 2 training rows")
        self.alive[ids] = False
        x_rem, x_del = self.x[self.alive], self.x[ids]
        self.gram -= x_del.T @ x_del
        spec = float(np.sqrt(max(np.linalg.eigvalsh(self.gram)[-1], 0.0)))  # ‖X‖₂ of the remaining data
        bounds, residuals = [], []
        for j, t in enumerate(self._targets(self.y)):
            w = self.w[j]
            td = t[ids]
            # Δ = mλw + Σ ∇ℓ(w; x_j): the gradient the removed rows (and their share of the regulariser) contributed
            delta = len(ids) * self.lam * w - x_del.T @ (td * expit(-td * (x_del @ w)))
            step = np.linalg.solve(_hessian(w, x_rem, self.lam), delta)
            self.w[j] = w + step
            bounds.append(GAMMA * spec * np.linalg.norm(step) * np.linalg.norm(x_rem @ step))
            residuals.append(np.linalg.norm(_loss_grad(self.w[j], x_rem, t[self.alive], self.lam, self.b[j])[1]))
            self.spent[j] += bounds[-1]
        accumulated = float(self.spent.max())
        certified = bool(np.all(self.spent <= self.budget))  # False for a non-finite bound too
        if not certified:  # budget spent: the Newton step can no longer be hidden by b; start over
            self.retrains += 1
            self._train()
        return Removal(
            certified=certified,
            retrained=not certified,
            removed=len(ids),
            residual_bound=float(max(bounds)),
            accumulated_bound=accumulated,
            gradient_residual=float(max(residuals)),
            budget_left=float(max(0.0, 1 - self.spent.max() / self.budget)),
            seconds=time.perf_counter() - start,
        )

    # ---- persistence ----------------------------------------------------------------------------------
    _ARRAYS = ("x", "y", "alive", "gram", "classes", "spent")
    _SCALARS = (
        "lam",
        "sigma",
        "eps",
        "delta",
        "seed",
        "fit_intercept",
        "retrains",
        "scale",
        "intercept_scale",
        "budget",
    )

    def save(self, path: str | Path) -> Path:
        """One ``.npz`` (no pickled objects): data, noise, weights and the budget spent, so removals can go on."""
        path = Path(path)
        # Any values: numpy's stub would otherwise match the dict against savez's allow_pickle: bool
        arrays: dict[str, Any] = {k: np.asarray(getattr(self, k)) for k in self._ARRAYS}
        arrays.update(
            w=np.stack(self.w), b=np.stack(self.b), scalars=np.array([float(getattr(self, k)) for k in self._SCALARS])
        )
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CertifiedLogistic:
        with np.load(Path(path), allow_pickle=False) as z:
            sc = dict(zip(cls._SCALARS, z["scalars"].tolist()))
            m = cls(sc["lam"], sc["sigma"], sc["eps"], sc["delta"], int(sc["seed"]), bool(sc["fit_intercept"]))
            for k in cls._ARRAYS:
                setattr(m, k, z[k])
            m.w, m.b = list(z["w"]), list(z["b"])
        m.retrains, m.scale, m.intercept_scale, m.budget = (
            int(sc["retrains"]),
            sc["scale"],
            sc["intercept_scale"],
            sc["budget"],
        )
        return m

    # ---- inference ----------------------------------------------------------------------------------
    def decision_function(self, x: np.ndarray) -> np.ndarray:
        f = self._features(x)
        return np.stack([f @ w for w in self.w], 1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        s = self.decision_function(x)
        if len(self.classes) == 2:
            p = expit(s[:, 0])
            return np.stack([1 - p, p], 1)
        e = np.exp(s - s.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[self.predict_proba(x).argmax(1)]
