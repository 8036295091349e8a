"""Inference benchmark: cold start, warm single-prompt latency, and 32-prompt batch throughput of enhancer's
batched transformers engine against the original research project's loop (one `model.generate` per prompt).

    .venv/bin/python bench/enhance.py                        # embedded model, CPU (make bench)
    .venv/bin/python bench/enhance.py --model DIR --device cuda

Both sides use the same model, instruction, sampling settings and max_new_tokens; the script prints a
Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

PROMPTS = [
    "a fox trotting across a snowy field at dawn",
    "two kids racing paper boats down a gutter after rain",
    'a neon sign that says "OPEN" flickering in the rain',
    "drone shot of a lighthouse in a storm",
    "an old man feeding pigeons in a park, watercolor",
    "a robot learning to dance in an empty warehouse",
    "three red balloons drifting over a city",
    "a chef flipping pancakes, slow motion",
    "pixel art knight walking through a forest",
    "a jellyfish glowing in the deep sea",
    "time-lapse of clouds over a mountain lake",
    "a cat knocking a glass off a table",
    "claymation snail racing a turtle",
    "a street market at night with lanterns",
    "a surfer riding a huge wave at sunset",
    "anime girl reading on a train, cherry blossoms outside",
    "a steam locomotive crossing a stone bridge",
    "close-up of coffee being poured into a cup",
    "a dragon flying over a medieval castle",
    "a busy subway platform, film noir",
    "hands shaping clay on a pottery wheel",
    "a hot air balloon festival at sunrise",
    "a snowboarder jumping off a cliff",
    "a tiny frog on a lily pad in the rain",
    "low-poly island with a waterfall",
    "a violinist playing on a rooftop at dusk",
    "wind turbines on a foggy hill",
    "a child blowing out birthday candles",
    "a desert caravan at golden hour",
    "an astronaut planting a flag on mars",
    "fireflies in a dark forest clearing",
    "a bakery window with fresh bread",
]


def cold_start(model: str, max_new_tokens: int, dtype: str | None) -> float:
    """A new process: import, load the model from the cache, enhance one prompt."""
    code = (
        "import time; t=time.perf_counter(); from enhancer import Enhancer; "
        f"e=Enhancer.load(model={model!r}, dtype={dtype!r}); "
        f"e.enhance('a fox in the snow', seed=0, max_new_tokens={max_new_tokens}); "
        "print(time.perf_counter()-t)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def naive_loop(engine, prompts, max_new_tokens, seed):
    """The original project's inference: one prompt, one generate call, in a Python loop."""
    import torch

    from enhancer.prompts import build_messages

    tokenizer, model = engine.tokenizer, engine.model
    torch.manual_seed(seed)
    generated = 0
    for prompt in prompts:
        text = tokenizer.apply_chat_template(build_messages(prompt), tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(engine.device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=0.7,
                top_p=0.9,
                top_k=None,
                repetition_penalty=1.1,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated += output.shape[1] - inputs["input_ids"].shape[1]
    return generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: the engine's choice)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="Warm single-prompt runs (median reported).")
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    args = parser.parse_args()

    import torch

    from enhancer import Enhancer
    from enhancer.prompts import build_messages

    cold = cold_start(args.model, args.max_new_tokens, args.dtype)
    enhancer = Enhancer.load(model=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    engine = enhancer.engine
    enhancer.enhance("warm up", seed=0, max_new_tokens=8)

    singles = []
    for i in range(args.repeats):
        started = time.perf_counter()
        enhancer.enhance(PROMPTS[i], seed=i, max_new_tokens=args.max_new_tokens)
        singles.append(time.perf_counter() - started)

    conversations = [build_messages(p) for p in PROMPTS]
    started = time.perf_counter()
    torch.manual_seed(0)
    results = engine.generate(conversations, n=1, seed=0, temperature=0.7, max_new_tokens=args.max_new_tokens)
    batched_s = time.perf_counter() - started
    batched_tokens = sum(len(engine.tokenizer(r.texts[0], add_special_tokens=False)["input_ids"]) for r in results)

    started = time.perf_counter()
    naive_tokens = naive_loop(engine, PROMPTS, args.max_new_tokens, seed=0)
    naive_s = time.perf_counter() - started

    numbers = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {engine.device}",
        "dtype": str(next(engine.model.parameters()).dtype).replace("torch.", ""),
        "model": enhancer.model_label,
        "max_new_tokens": args.max_new_tokens,
        "cold_start_s": round(cold, 2),
        "warm_single_s_median": round(statistics.median(singles), 2),
        "batch32_enhancer_s": round(batched_s, 1),
        "batch32_enhancer_prompts_per_s": round(len(PROMPTS) / batched_s, 3),
        "batch32_enhancer_tokens": batched_tokens,
        "batch32_naive_s": round(naive_s, 1),
        "batch32_naive_prompts_per_s": round(len(PROMPTS) / naive_s, 3),
        "batch32_naive_tokens": naive_tokens,
        "speedup": round(naive_s / batched_s, 2),
    }
    print(json.dumps(numbers, indent=2))
    print()
    print("| measure | value |\n|---|---|")
    for key, value in numbers.items():
        print(f"| {key} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
