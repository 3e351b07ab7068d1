"""A GPT-2 small enough to memorize injected sequences on a CPU in minutes (the LM scenarios' model)."""

from __future__ import annotations

import torch


def tiny_gpt2(
    vocab_size: int,
    *,
    layers: int = 2,
    width: int = 128,
    heads: int = 4,
    context: int = 128,
    seed: int = 0,
    eos_token_id: int = 0,
):
    """GPT-2 with ``layers`` x ``width`` and no dropout (dropout costs 15-30% of CPU step time and
    slows memorization, which is what these models are for)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    # loss_type is a PretrainedConfig keyword that GPT2Config's declared signature leaves out
    cfg = GPT2Config(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        loss_type="ForCausalLM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(cfg)
