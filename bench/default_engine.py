"""The default engine against the raw llama.cpp call and the transformers engine, side by side in one run.

    .venv/bin/python bench/default_engine.py                  # 3 new-process runs each, a 32-prompt batch
    .venv/bin/python bench/default_engine.py --runs 5 --json /tmp/engine.json

1. One rewrite in a new process with a warm cache (the embedded model already exported), wall time, median of
   --runs: `enhancer enhance IDEA` (engine auto: llama.cpp), a bare Python script that loads the same GGUF
   through xllamacpp and sends the same prompt text in one request for exactly as many tokens as enhancer's
   rewrite has (the floor enhancer can reach; llama.cpp's own penalty window, so its words differ), and
   `enhancer enhance IDEA --engine transformers`.
2. Cold start of the model: building the llama.cpp engine on the cached GGUF until it has answered a first
   token, in this process, median; with 1 slot (one rewrite) and 8 (batches, serve).
3. A batch of 32 distinct prompts (data/stage2) through `Enhancer.enhance(list)`: llama.cpp's slots against the
   transformers engine's batched generate (its CPU default, bfloat16 where the CPU has it).

Every run decodes greedily (one rewrite), so both engines generate about the same number of tokens; the table
says how many. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IDEA = "three red balloons drifting over a rooftop"

RAW = """
import sys, xllamacpp
gguf, prompt_file, n_predict, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
params = xllamacpp.CommonParams()
params.model.path = gguf
params.n_ctx, params.n_parallel, params.warmup, params.verbosity = 1024, 1, False, 0  # as enhancer for one rewrite
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
server = xllamacpp.Server(params)
reply = server.handle_completions({"prompt": open(prompt_file).read(), "n_predict": n_predict, "temperature": 0.0,
    "top_k": 1, "top_p": 1.0, "min_p": 0.0, "seed": 0, "repeat_penalty": 1.1, "repeat_last_n": 64,
    "ignore_eos": True, "cache_prompt": False})
print(" ".join(reply["choices"][0]["text"].split()))
"""


def wall(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started, result.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()

    from enhancer.data import load_prompts
    from enhancer.enhance import Enhancer
    from enhancer.enhance.engines import LlamaCppEngine, gguf_chat_template
    from enhancer.enhance.enhancer import max_tokens_for
    from enhancer.export.gguf import cached_export
    from enhancer.models import resolve_model
    from enhancer.prompts import build_messages, get_profile

    gguf = str(cached_export("embedded"))  # the warm cache the runs below assume
    template = gguf_chat_template(gguf)
    threads = len(os.sched_getaffinity(0))
    results: dict = {"threads": threads}

    # 2. cold start of the model
    for slots in (1, 8):  # one rewrite (the CLI with a PROMPT), batches and serve
        loads = []
        for _ in range(options.runs):
            started = time.perf_counter()
            engine = LlamaCppEngine(gguf, chat_template=template, parallel=slots)
            loads.append(time.perf_counter() - started)
            del engine
        results[f"model_load_{slots}_slots_s"] = round(statistics.median(loads), 3)

    # 1. one rewrite, new process
    resolved = resolve_model("embedded")
    prompt_format = template.get("prompt_format") or resolved.trained_prompt_format() or "chat"
    engine = LlamaCppEngine(gguf, chat_template=template, parallel=1)
    text = engine.render(build_messages(IDEA, "generic", prompt_format))
    limit = max_tokens_for(get_profile("generic"))
    n_predict = engine.request(text, seed=0, temperature=0.0, max_new_tokens=limit)["tokens"]  # what enhancer writes
    results["tokens"] = n_predict
    del engine
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(text)
    commands = {
        "raw llama.cpp (xllamacpp script)": [
            sys.executable,
            "-c",
            RAW,
            gguf,
            handle.name,
            str(n_predict),
            str(threads),
        ],
        "enhancer enhance (default engine)": [str(BIN / "enhancer"), "enhance", IDEA, "--seed", "0"],
        "enhancer enhance --engine transformers": [
            str(BIN / "enhancer"),
            "enhance",
            IDEA,
            "--seed",
            "0",
            "--engine",
            "transformers",
        ],
    }
    for command in commands.values():
        wall(command)  # page cache and first-use work out of the way
    times: dict[str, list[float]] = {name: [] for name in commands}
    outputs: dict[str, str] = {}
    for run in range(options.runs):  # interleaved, so a busy spell on the machine falls on every command alike
        for name, command in commands.items():
            seconds, outputs[name] = wall(command)
            times[name].append(seconds)
        print(
            f"bench: run {run + 1}: { ({k: round(v[-1], 2) for k, v in times.items()}) }", file=sys.stderr, flush=True
        )
    single = {
        name: {"median_s": round(statistics.median(times[name]), 2), "words": len(outputs[name].split())}
        for name in commands
    }
    results["single"] = single
    os.unlink(handle.name)

    # 3. a batch of 32 prompts, in this process
    prompts = load_prompts([REPO / "data" / "stage2"])[: options.batch]
    batch = {}
    for engine_name in ("llamacpp", "transformers"):
        enhancer = Enhancer.load(engine=engine_name, batch_size=options.batch)
        enhancer.enhance("a warm-up prompt about a kite", seed=0)
        started = time.perf_counter()
        rows = enhancer.enhance(prompts, seed=0)
        seconds = time.perf_counter() - started
        batch[engine_name] = {
            "seconds": round(seconds, 1),
            "prompts_per_s": round(len(rows) / seconds, 3),
            "ok": sum(r.status == "ok" for r in rows),
            "words": sum(len(r.enhanced.split()) for r in rows),
        }
        print(f"bench: batch {engine_name}: {batch[engine_name]}", file=sys.stderr, flush=True)
        del enhancer
    results["batch"] = batch

    raw, default, torch_single = (single[name]["median_s"] for name in commands)
    print(
        f"Default engine against llama.cpp and transformers; {platform.machine()}, {threads} threads, {date.today()}\n"
    )
    print("| one rewrite, new process, warm cache | median wall s | words |")
    print("|---|---|---|")
    for name, row in single.items():
        print(f"| {name} | {row['median_s']} | {row['words']} |")
    print(
        f"\n{n_predict} tokens; default / raw llama.cpp: {default / raw:.2f}x; transformers / default: "
        f"{torch_single / default:.1f}x; model load (engine on the cached GGUF, ready to decode): "
        f"{results['model_load_1_slots_s']} s with 1 slot, {results['model_load_8_slots_s']} s with 8\n"
    )
    print(f"| {options.batch} prompts in one call | seconds | prompts/s | ok | words |")
    print("|---|---|---|---|---|")
    for name, row in batch.items():
        print(f"| {name} | {row['seconds']} | {row['prompts_per_s']} | {row['ok']} | {row['words']} |")
    ratio = batch["llamacpp"]["prompts_per_s"] / batch["transformers"]["prompts_per_s"]
    print(f"\nbatch throughput, llama.cpp / transformers: {ratio:.2f}x")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
