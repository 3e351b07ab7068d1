"""obliviate: machine unlearning you can prove.

Remove the effect of chosen training data from a trained model, cheaply, and show against a
model retrained without that data (the oracle) that it is gone.
"""

__version__ = "0.1.0"

from . import data as datasets
from . import exact, methods, metrics, models, objectives, testing
from .data import ForgetSplit
from .evaluation import Detection, Report, TuneResult, detect, evaluate, memorization, tune
from .methods import UnlearningResult, unlearn
from .models import load_model, save_model
from .models.log import training_log
from .train import Ensemble, Recipe, train, train_ensemble


def __getattr__(name: str):
    """``ob.bench`` and ``ob.report`` load on first use (YAML, DuckDB and matplotlib are not needed
    to unlearn a classifier; ``ob.lm`` imports transformers only inside the functions that need it)."""
    if name in ("bench", "report", "lm"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'obliviate' has no attribute {name!r}")


__all__ = [
    "Ensemble",
    "ForgetSplit",
    "Recipe",
    "Report",
    "bench",
    "lm",
    "report",
    "UnlearningResult",
    "datasets",
    "Detection",
    "detect",
    "memorization",
    "evaluate",
    "exact",
    "load_model",
    "methods",
    "metrics",
    "models",
    "objectives",
    "save_model",
    "testing",
    "train",
    "train_ensemble",
    "training_log",
    "tune",
    "TuneResult",
    "unlearn",
]
