"""Decode speed per engine on one prompt: transformers (float32, bfloat16) against llama.cpp on GGUF exports of the
same model (the embedded model with its shipped adapter by default). Greedy, a fixed number of new tokens, the
median of `--runs` runs after one warm-up; load time separately.

    .venv/bin/python bench/engines.py                 # needs the llamacpp extra for the llama.cpp rows

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idea", default="a fox trotting across a snowy field at dawn")
    options = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from enhancer.gguf_export import export_gguf
    from enhancer.models import read_metadata, resolve_model
    from enhancer.prompts import build_messages

    resolved = resolve_model("embedded", None, log=lambda m: None)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    prompt_format = read_metadata(resolved.adapter).get("prompt_format", "chat") if resolved.adapter else "chat"
    text = tokenizer.apply_chat_template(
        build_messages(options.idea, "generic", prompt_format), add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = []

    for dtype in ("float32", "bfloat16"):
        from peft import PeftModel

        started = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=getattr(torch, dtype))
        if resolved.adapter:
            model = PeftModel.from_pretrained(model, resolved.adapter).merge_and_unload()
        load = time.perf_counter() - started
        inputs = torch.tensor([ids])
        times = []
        for run in range(options.runs + 1):
            started = time.perf_counter()
            with torch.inference_mode():
                model.generate(
                    inputs,
                    max_new_tokens=options.tokens,
                    min_new_tokens=options.tokens,
                    do_sample=False,
                    pad_token_id=0,
                )
            if run:  # the first run warms up
                times.append(time.perf_counter() - started)
        rows.append((f"transformers {dtype}", load, options.tokens / statistics.median(times)))
        print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)

    try:
        from llama_cpp import Llama
    except ImportError:
        print("bench: llama-cpp-python is not installed: no llama.cpp rows", file=sys.stderr)
        Llama = None
    if Llama is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for quant in ("f16", "q8_0"):
                path = export_gguf(Path(tmp) / f"embedded-{quant}.gguf", quant=quant, log=lambda m: None)
                started = time.perf_counter()
                llm = Llama(model_path=str(path), n_ctx=1024, verbose=False)
                load = time.perf_counter() - started
                times = []
                for run in range(options.runs + 1):
                    llm.reset()
                    started = time.perf_counter()
                    made = 0
                    for _ in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
                        made += 1
                        if made == options.tokens:
                            break
                    if run:
                        times.append(time.perf_counter() - started)
                rows.append((f"llama.cpp {quant}", load, options.tokens / statistics.median(times)))
                print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)

    base = rows[0][2]
    print(
        f"Decode speed, embedded model + shipped adapter, prompt of {len(ids)} tokens, {options.tokens} new tokens "
        f"greedy, median of {options.runs}; {platform.machine()}, {date.today()}\n"
    )
    print("| engine | load s | tokens/s (prompt + decode) | vs transformers float32 |")
    print("|---|---|---|---|")
    for name, load, speed in rows:
        print(f"| {name} | {load:.1f} | {speed:.1f} | {speed / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
