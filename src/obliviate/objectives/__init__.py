"""Task adapters (the modality-specific part of every method and metric)."""

from .base import Task
from .classification import ClassificationTask, kd_kl, task_for

__all__ = ["ClassificationTask", "Task", "kd_kl", "task_for"]
