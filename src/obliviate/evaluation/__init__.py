"""Evaluation protocols: the one place that combines models, splits and metrics."""

from .evaluate import DEFAULT_METRICS, Report, evaluate, outputs_of, random_init_like, split_views

__all__ = ["DEFAULT_METRICS", "Report", "evaluate", "outputs_of", "random_init_like", "split_views"]
