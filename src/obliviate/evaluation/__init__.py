"""Evaluation protocols: the one place that combines models, splits and metrics."""

from .evaluate import DEFAULT_METRICS, Report, evaluate, outputs_of, random_init_like, split_views
from .protocols import neurips23
from .tune import TuneResult, tune
from .ulira import ulira

__all__ = ["DEFAULT_METRICS", "Report", "evaluate", "neurips23", "outputs_of", "random_init_like", "split_views", "TuneResult", "tune", "ulira"]
