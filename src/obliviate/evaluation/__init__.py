"""Evaluation protocols: the one place that combines models, splits and metrics."""

from .evaluate import METRICS, Report, evaluate, model_metrics, split_views

__all__ = ["METRICS", "Report", "evaluate", "model_metrics", "split_views"]
