"""Stub plugins for offline tests of the full loop: a deterministic backend that writes small real mp4 files,
a scorer with a known answer, and a trainer that really updates a tiny random model. Loaded with
`--plugin stub_plugins` (tests/ on PYTHONPATH) or `plugins: [stub_plugins]` in a config.

Each records what it received under the run's folder, so tests can check what every hook got and returned.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from enhancer import Video, hookimpl
from enhancer.video import read_frames, stable_seed, write_mp4


class StubBackend:
    """Deterministic 4-frame mp4 whose colour comes from the prompt."""

    name = "stub_video"

    def __init__(self, out_dir: str, cost_per_video: float = 0.0):
        self.out_dir = Path(out_dir)
        self.cost_per_video = cost_per_video
        self.log = self.out_dir / "stub_backend_calls.jsonl"

    def estimate_cost(self, *, seconds, size):
        return self.cost_per_video

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None):
        key = stable_seed(prompt, seed)
        colour = np.array([key & 255, (key >> 8) & 255, (key >> 16) & 255], dtype=np.uint8)
        frames = np.broadcast_to(colour, (4, 16, 16, 3)).copy()
        path = write_mp4(frames, self.out_dir / f"stub-{key:08x}.mp4", fps=4)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(json.dumps({"prompt": prompt, "seed": seed, "seconds": seconds, "size": size}) + "\n")
        return Video(str(path), self.name, "stub", seconds, 0.001, self.cost_per_video, seed)


def known_score(enhanced: str) -> float:
    """The stub scorer's answer: words / 100, capped at 1."""
    return round(min(1.0, len(enhanced.split()) / 100), 4)


class StubScorer:
    """Known answer: min(1, words / 100) when the video is a readable mp4, None otherwise."""

    name = "stub_score"

    def score(self, samples):
        scores = []
        for sample in samples:
            try:
                readable = sample.video_path is not None and len(read_frames(sample.video_path)) > 0
            except Exception:
                readable = False
            scores.append(known_score(sample.enhanced) if readable else None)
        return scores


class StubTrainer:
    """REINFORCE on the policy's LoRA weights, a few tokens per sample: small, real, fast on a tiny model."""

    name = "stub_trainer"

    def __init__(self, max_new_tokens: int = 12):
        self.max_new_tokens = max_new_tokens

    def train(self, policy, dataset, rollout, context):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from enhancer.prompts import build_messages

        torch.manual_seed(context.seed)
        tokenizer = AutoTokenizer.from_pretrained(policy.model_path)
        tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(policy.model_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, policy.adapter, is_trainable=True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in trainable]
        optimizer = torch.optim.AdamW(trainable, lr=context.rl.learning_rate)
        record = {"policy": policy.__dict__, "dataset": list(dataset), "steps": []}
        for step in range(context.rl.max_steps):
            start = (step * context.rl.prompts_per_step) % len(dataset)
            prompts = [dataset[(start + i) % len(dataset)] for i in range(context.rl.prompts_per_step)]
            simple = [p for p in prompts for _ in range(context.rl.samples_per_prompt)]
            texts = [
                tokenizer.apply_chat_template(
                    build_messages(p, policy.target), tokenize=False, add_generation_prompt=True
                )
                for p in simple
            ]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                output = model.generate(
                    **encoded, do_sample=True, max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id
                )
            completion_ids = output[:, encoded["input_ids"].shape[1] :]
            completions = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
            rewards = rollout(simple, completions)
            values = torch.tensor([r if r is not None else 0.0 for r in rewards])
            advantages = values - values.mean()
            logits = model(output, attention_mask=torch.ones_like(output)).logits[
                :, encoded["input_ids"].shape[1] - 1 : -1
            ]
            logprobs = torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1).sum(-1)
            loss = -(advantages * logprobs).mean() - 1e-3 * logprobs.mean()  # small likelihood term: never a zero grad
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            record["steps"].append(
                {"simple": simple, "completions": completions, "rewards": rewards, "loss": loss.item()}
            )
        record["changed"] = any(not torch.equal(a, b.detach()) for a, b in zip(before, trainable, strict=True))
        out = context.out_dir / "adapter"
        model.save_pretrained(out)
        (context.out_dir.parent / "stub_trainer.json").write_text(json.dumps(record, default=str), encoding="utf-8")
        return str(out)


class FourArgumentTrainer:
    """A trainer written before trainers were given a context: `train(policy, dataset, rollout, config)`."""

    name = "stub_trainer_v1"

    def train(self, policy, dataset, rollout, config):
        rewards = rollout([dataset[0]], [f"{dataset[0]}, at dawn, wide shot"])
        out = Path(config.out) / "stage2" / "v1.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rewards": rewards}), encoding="utf-8")
        return str(out)


@hookimpl
def enhancer_video_backends():
    return {"stub_video": StubBackend}


@hookimpl
def enhancer_reward_scorers():
    return {"stub_score": StubScorer}


@hookimpl
def enhancer_policy_trainers():
    return {"stub_trainer": StubTrainer, "stub_trainer_v1": FourArgumentTrainer}
