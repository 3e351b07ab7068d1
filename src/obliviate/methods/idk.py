"""``idk``: fine-tune the forget prompts towards a refusal ("IdkSFT", TOFU's simplest variant)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.text import TextDataset
from .base import Context, register
from .lm_common import LMMethod, LMParams


def refusal_rows(forget: TextDataset, tokenizer, refusal: str) -> TextDataset:
    """Each forget row's prompt followed by ``refusal``: the prompt is everything before the first
    scored token (a QA pair's question); a row scored throughout (plain text) keeps its first half."""
    tail = tokenizer(" " + refusal.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    T = forget.length
    ids = torch.full_like(forget.ids, tokenizer.eos_token_id)
    mask, labels = torch.zeros_like(forget.mask), torch.full_like(forget.labels, -100)
    for i in range(len(forget)):
        real = int(forget.mask[i].sum())
        scored = (forget.labels[i] != -100).nonzero()
        cut = int(scored[0]) if len(scored) and int(scored[0]) > 1 else max(1, real // 2)
        row = (forget.ids[i, :cut].tolist() + tail)[:T]
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, cut : len(row)] = ids[i, cut : len(row)]
    return TextDataset(ids, mask, labels)


@register
class IdK(LMMethod["IdK.Params"]):
    """Descend on ``prompt → refusal`` for every forget row (reference A2, "IdkSFT"), with a retain
    NLL term (α = 1). The model keeps answering retained questions but says it does not know the
    forgotten ones, which removes the answer from greedy outputs without driving the forget set's
    likelihood to the floor. Needs the tokenizer: ``task=ob.objectives.CausalLMTask(tokenizer)``."""

    name = "idk"
    modalities = frozenset({"lm"})

    @dataclass(frozen=True)
    class Params(LMParams):
        alpha: float = 1.0
        refusal: str = "I don't know."

    def setup(self, model: nn.Module, ctx: Context) -> None:
        tok = getattr(ctx.task, "tokenizer", None)
        if tok is None:
            raise ValueError("idk writes refusals and needs the tokenizer: pass task=CausalLMTask(tokenizer)")
        if not isinstance(ctx.forget, TextDataset):
            raise TypeError(f"idk needs a TextDataset forget set, got {type(ctx.forget).__name__}")
        ctx.state["refusals"] = refusal_rows(ctx.forget, tok, self.params.refusal)

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:
        target = ctx.task.to(ctx.state["refusals"].batch(rows), ctx.device)
        return ctx.task.losses(ctx.task.logits(model, target), target)
