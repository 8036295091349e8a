"""Inference benchmarks, printed as Markdown tables for docs/benchmarks.md.

Batch mode (the default): cold start, warm single-prompt latency, and 32-prompt batch throughput of enhancer's
batched transformers engine against the original research project's loop (one `model.generate` per prompt).
Both sides use the same model, instruction, sampling settings and max_new_tokens.

    .venv/bin/python bench/enhance.py                        # embedded model, CPU (make bench)
    .venv/bin/python bench/enhance.py --model DIR --device cuda

Engines mode: time to first token and decode tokens/s of one prompt, per engine and torch setting (float32,
bfloat16, eager versus SDPA attention, static KV cache, torch.compile) and llama.cpp on GGUF exports of the same
merged weights (f16, q8_0, through the xllamacpp wheel). Greedy, a fixed number of new tokens, median of --runs
after a warm-up (the warm-up is where torch.compile compiles: reported as its own column).

    .venv/bin/python bench/enhance.py --engines
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
from functools import partial
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


class Clock:
    """Timestamps each token as it comes: transformers' streamer protocol (`put` gets the prompt first, then each
    new token) and a plain callback for llama.cpp's token iterator."""

    def __init__(self):
        self.started = time.perf_counter()
        self.stamps: list[float] = []
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # the first put is the prompt
            self.prompt_seen = True
            return
        self.stamps.append(time.perf_counter())

    def end(self):
        pass

    def first_token_s(self) -> float:
        return self.stamps[0] - self.started

    def decode_tokens_per_s(self) -> float:
        return (len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0])


def torch_settings():
    """(label, dtype, attention, cache, compile): float32 SDPA is the reference."""
    return [
        ("float32, sdpa", "float32", "sdpa", None, False),
        ("float32, eager attention", "float32", "eager", None, False),
        ("bfloat16, sdpa (the default here)", "bfloat16", "sdpa", None, False),
        ("bfloat16, eager attention", "bfloat16", "eager", None, False),
        ("bfloat16, static KV cache", "bfloat16", "sdpa", "static", False),
        ("bfloat16, static KV cache + torch.compile", "bfloat16", "sdpa", "static", True),
    ]


def engines_table(model: str, tokens: int, runs: int, idea: str) -> list[dict]:
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.generation.configuration_utils import CompileConfig

    from enhancer.export.gguf import export_gguf
    from enhancer.models import read_metadata, resolve_model
    from enhancer.prompts import build_messages

    resolved = resolve_model(model, None, log=lambda m: None)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    prompt_format = read_metadata(resolved.adapter).get("prompt_format", "chat") if resolved.adapter else "chat"
    text = tokenizer.apply_chat_template(
        build_messages(idea, "generic", prompt_format), add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = []

    for label, dtype, attention, cache, compiled in torch_settings():
        from peft import PeftModel

        started = time.perf_counter()
        net = AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=getattr(torch, dtype), attn_implementation=attention
        )
        if resolved.adapter:
            net = PeftModel.from_pretrained(net, resolved.adapter).merge_and_unload()
        net.eval()
        load = time.perf_counter() - started
        config = GenerationConfig(
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or 0,
            cache_implementation=cache,
        )
        if compiled:  # generate compiles the decode step itself on CUDA; on CPU it must be told
            config.compile_config = CompileConfig()
            config.compile_config._compile_all_devices = True
        else:
            config.disable_compile = True
        one_run = partial(_torch_run, net, torch.tensor([ids]), config)
        rows.append(_row(f"transformers {label}", load, *_timed(one_run, runs)))
        print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)
        del net

    from enhancer.enhance.engines import LlamaCppEngine

    with tempfile.TemporaryDirectory() as tmp:
        for quant in ("f16", "q8_0"):
            path = export_gguf(Path(tmp) / f"{quant}.gguf", model=model, quant=quant, log=lambda m: None)
            started = time.perf_counter()
            engine = LlamaCppEngine(str(path), parallel=1, n_ctx=1024)
            load = time.perf_counter() - started
            one_run = partial(_llama_run, engine, ids, tokens)
            rows.append(_row(f"llama.cpp {quant}", load, *_timed(one_run, runs)))
            print(f"bench: {rows[-1]}", file=sys.stderr, flush=True)
            del engine
    return rows


def _torch_run(net, inputs, config) -> Clock:
    import torch

    clock = Clock()
    with torch.inference_mode():
        net.generate(inputs, generation_config=config, streamer=clock)
    return clock


def _llama_run(engine, ids: list[int], tokens: int) -> Clock:
    clock = Clock()
    clock.put(None)  # llama.cpp streams new tokens only: this stands for the prompt
    request = {"prompt": ids, "n_predict": tokens, "temperature": 0.0, "top_k": 1, "repeat_penalty": 1.0}
    request.update(ignore_eos=True, cache_prompt=False, stream=True)  # the same work every run

    def on_chunk(chunk):
        if any(choice.get("text") for choice in chunk.get("choices", [])):
            clock.put(None)
        return False

    engine.server.handle_completions(request, on_chunk)
    return clock


def _timed(one_run, runs: int) -> tuple[float, list[Clock]]:
    """One warm-up run (its wall time returned: where torch.compile compiles), then `runs` timed ones."""
    warmup_clock = one_run()
    warmup = time.perf_counter() - warmup_clock.started
    return warmup, [one_run() for _ in range(runs)]


def _row(engine: str, load: float, warmup: float, clocks: list[Clock]) -> dict:
    return {
        "engine": engine,
        "load_s": round(load, 2),
        "warmup_s": round(warmup, 2),
        "first_token_s": round(statistics.median(c.first_token_s() for c in clocks), 3),
        "decode_tokens_per_s": round(statistics.median(c.decode_tokens_per_s() for c in clocks), 1),
    }


def print_engines(rows: list[dict], args) -> None:
    import torch

    base = rows[0]["decode_tokens_per_s"]
    print(
        f"Time to first token and decode speed, {args.model} model, {args.tokens} new tokens greedy, median of "
        f"{args.runs} after a warm-up; {platform.machine()}, {torch.get_num_threads()} torch threads, {date.today()}\n"
    )
    print("| engine | load s | warm-up s | first token s | decode tokens/s | vs float32 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['engine']} | {row['load_s']} | {row['warmup_s']} | {row['first_token_s']} | "
            f"{row['decode_tokens_per_s']} | {row['decode_tokens_per_s'] / base:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--engines", action="store_true", help="Per-engine first-token time and decode speed.")
    parser.add_argument("--tokens", type=int, default=100, help="New tokens per run in --engines mode.")
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per engine in --engines mode.")
    parser.add_argument("--idea", default=PROMPTS[0], help="The prompt in --engines mode.")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: the engine's choice)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="Warm single-prompt runs (median reported).")
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    args = parser.parse_args()
    if args.engines:
        rows = engines_table(args.model, args.tokens, args.runs, args.idea)
        print_engines(rows, args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return

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
