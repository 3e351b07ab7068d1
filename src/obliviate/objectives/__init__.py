"""Task adapters (the modality-specific part of every method and metric)."""

from torch import nn
from torch.utils.data import Subset

from ..data.datasets import Data, SizedDataset
from .base import Task
from .causal_lm import CausalLMTask
from .classification import ClassificationTask, kd_kl
from .classification import task_for as classification_task_for
from .diffusion import DiffusionTask
from .diffusion import task_for as diffusion_task_for


def task_for(model: nn.Module, dataset: SizedDataset) -> Task:
    """The adapter a (model, dataset) pair needs: text rows make a causal-LM task, anything else a
    classification task sized by the model's output width, a denoiser a diffusion task; each is
    checked against the data."""
    from ..data.text import TextDataset
    from ..models.diffusion import Denoiser

    if isinstance(model, Denoiser):
        return diffusion_task_for(model, dataset)

    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if isinstance(base, TextDataset):
        task = CausalLMTask()
        task.check(model, dataset)
        return task
    return classification_task_for(model, dataset)


def task_of(data: Data) -> Task | None:
    """A text scenario's task with its tokenizer (``idk`` writes refusals with it), for callers that
    hold the whole ``Data``; else None, so that ``unlearn`` picks the task from the model and rows."""
    tok = getattr(data, "tokenizer", None)
    return CausalLMTask(tok) if tok is not None else None


__all__ = ["CausalLMTask", "ClassificationTask", "DiffusionTask", "Task", "kd_kl", "task_for", "task_of"]
