"""Policy trainer "trl_ppo": TRL's PPOTrainer (`trl.experimental.ppo`, TRL 1.10-1.12) with the core's rollout
presented as the reward model it asks for.

    enhancer run --backend synthetic --reward keep,coverage,clean --trainer trl_ppo

The bridge. TRL's PPO scores a batch with `get_reward(reward_model, query_responses, pad_token_id,
context_length)`: it runs `getattr(reward_model, reward_model.base_model_prefix)` on the token ids (padding
masked out), applies `reward_model.score` to the last hidden state, and reads the value at each response's
last token. `RolloutRewardModel` is that module. Its backbone turns each row back into text (the query is
looked up among the tokenised RL prompts, so the simple prompt is exact, not parsed out of a chat template;
the rest is the enhanced prompt), sends the whole batch through the rollout in one call (every video
generated concurrently by the registered backend, then scored by the registered scorers, with traces, cache
and budget), and returns each row's reward as a one-channel hidden state at every position; `score` is the
identity. A sample the scorers could not judge (None) gets the batch's mean reward, so it teaches nothing
either way. The rollout forward batch is the whole PPO batch, so all of a step's videos are made at once.

The policy. The stage-1 adapter is merged into the base weights in memory and PPO trains a fresh LoRA on top;
PPO's reference model is the same network with that LoRA switched off, so the KL penalty holds the policy
near the SFT model, as in the original research project. The value model starts from the same weights with a
scalar head and trains its own LoRA plus the head. The saved adapter folds the stage-1 and the PPO LoRA into
one (PEFT's "cat" combination: rank r_sft + r_ppo, the exact sum of both updates), so it loads on the base
model with plain `PeftModel.from_pretrained`, like any other enhancer adapter.

Interrupts. TRL's PPO loop cannot resume by itself; this plugin writes its own checkpoints every `save_steps`
updates under out/stage2/checkpoints/step-N (policy LoRA, value LoRA and head, optimizer, a `done.json` marker
written last). A rerun of the same `enhancer run` loads the newest complete one, moves the traces of the
updates it lost to traces.discarded.jsonl, and runs the remaining updates. The learning rate is constant so
a resumed run follows the same schedule. On CPU: `use_cpu=True, bf16=False` (set automatically).

Several processes (torchrun, accelerate): each update's rewrites are split evenly over them, each process's
reward-model call runs its share through the rollout, and the main process alone writes checkpoints and the
final adapter. The KL reference is then a frozen copy of the SFT policy in each process (TRL 1.12's switch-the-
LoRA-off reference does not work through DDP), so PPO on N processes holds one more model copy per process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from enhancer import hookimpl, logs
from enhancer.contracts import TrainContext
from enhancer.models import METADATA_FILE, read_metadata
from enhancer.train.adapters import fold_adapters, merged_policy
from enhancer.train.distributed import ProcessContext
from enhancer.train.rollout import BudgetExceeded


def pad_token_for(tokenizer) -> None:
    """Give the tokenizer a pad token that is not its end-of-sequence token. PPO masks every pad position, and
    in chat models whose pad is the end-of-turn token (SmolLM2, Qwen) that would also mask the prompt's own
    end-of-turn tokens. An existing special token the chat template never uses is taken, so the embedding
    matrix keeps its size."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
        tokenize=False,
    )
    for token in [tokenizer.unk_token, *tokenizer.all_special_tokens]:
        if token and token not in (tokenizer.eos_token, tokenizer.bos_token) and token not in rendered:
            tokenizer.pad_token = token
            return
    raise ValueError(
        "trl_ppo needs a pad token distinct from the end-of-sequence token, and this tokenizer has no spare "
        "special token: add one (tokenizer.add_special_tokens) and resize the model's embeddings first"
    )


def _torch_modules():
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    class RolloutBackbone(torch.nn.Module):
        """Token ids in, rewards out (as a [batch, length, 1] hidden state), through the core's rollout."""

        def __init__(self, tokenizer, prompts: dict[tuple[int, ...], str], rollout, log):
            super().__init__()
            self.tokenizer = tokenizer
            self.prompts = prompts
            self.lengths = sorted({len(k) for k in prompts}, reverse=True)
            self.rollout = rollout
            self.log = log
            self.register_buffer("device_anchor", torch.zeros(()), persistent=False)

        def split(self, tokens: list[int]) -> tuple[str, str]:
            for length in self.lengths:
                simple = self.prompts.get(tuple(tokens[:length]))
                if simple is not None:
                    return simple, self.tokenizer.decode(tokens[length:], skip_special_tokens=True).strip()
            raise ValueError("trl_ppo: a query is not one of the tokenised RL prompts (was the tokenizer changed?)")

        def forward(self, input_ids, attention_mask=None, **_):
            mask = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=bool)
            pairs = [self.split(ids[keep].tolist()) for ids, keep in zip(input_ids, mask, strict=True)]
            rewards = self.rollout([s for s, _ in pairs], [e for _, e in pairs])
            known = [r for r in rewards if r is not None]
            if len(known) < len(rewards):
                self.log(f"trl_ppo: {len(rewards) - len(known)} of {len(rewards)} samples unscored; given the mean")
            fill = sum(known) / len(known) if known else 0.0
            values = torch.tensor([fill if r is None else r for r in rewards], dtype=torch.float32)
            hidden = values.to(input_ids.device)[:, None, None].expand(-1, input_ids.shape[1], 1)
            return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,))

    class RolloutRewardModel(torch.nn.Module):
        """The module TRL's PPOTrainer takes as `reward_model`; see the module docstring."""

        base_model_prefix = "backbone"

        def __init__(self, tokenizer, prompts, rollout, log):
            super().__init__()
            self.backbone = RolloutBackbone(tokenizer, prompts, rollout, log)
            self.score = torch.nn.Identity()

    return RolloutRewardModel


def rollout_reward_model(tokenizer, prompts: dict[tuple[int, ...], str], rollout, log=logs.info):
    """The bridge: `prompts` maps each tokenised query (no padding) to its simple prompt."""
    return _torch_modules()(tokenizer, prompts, rollout, log)


def latest_checkpoint(directory: Path, log=logs.info) -> tuple[int, Path] | None:
    """The newest complete checkpoint, as (updates done, folder). A checkpoint is written in a .partial folder
    (done.json last) and renamed when whole; a .partial one left by a kill mid-save is reported and removed."""
    for partial in sorted(directory.glob(".partial-step-*")):
        log(f"trl_ppo: checkpoint {partial} is incomplete (killed mid-save); skipped and removed")
        shutil.rmtree(partial, ignore_errors=True)
    found = []
    for folder in directory.glob("step-*"):
        if (folder / "done.json").exists() and folder.name[5:].isdigit():
            found.append((int(folder.name[5:]), folder))
    return max(found) if found else None


class PPOPolicyTrainer:
    """TRL PPOTrainer; rewards come from the core's rollout through `RolloutRewardModel`."""

    name = "trl_ppo"

    def __init__(
        self,
        kl_coef: float = 0.05,
        num_ppo_epochs: int = 2,
        num_mini_batches: int = 1,
        cliprange: float = 0.2,
        vf_coef: float = 0.1,
        lora_r: int = 16,
        lora_alpha: int = 32,
        missing_eos_penalty: float | None = None,
        save_steps: int = 5,
        keep_checkpoints: int = 2,
    ):
        if save_steps < 1 or keep_checkpoints < 1:
            raise ValueError("trl_ppo: save_steps and keep_checkpoints must be at least 1")
        self.kl_coef = kl_coef
        self.num_ppo_epochs = num_ppo_epochs
        self.num_mini_batches = num_mini_batches
        self.cliprange = cliprange
        self.vf_coef = vf_coef
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.missing_eos_penalty = missing_eos_penalty
        self.save_steps = save_steps
        self.keep_checkpoints = keep_checkpoints

    def train(self, policy, dataset, rollout, context: TrainContext) -> str:
        import torch
        from datasets import Dataset
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        from enhancer.prompts import build_messages

        out_dir, process, log = context.out_dir, context.process, context.log
        checkpoints = out_dir / "checkpoints"
        rl = context.rl
        batch = rl.prompts_per_step * rl.samples_per_prompt // process.world_size  # this process's share
        use_cpu = not torch.cuda.is_available()
        dtype = torch.float32 if use_cpu else torch.bfloat16

        tokenizer = AutoTokenizer.from_pretrained(policy.model_path)
        tokenizer.padding_side = "left"
        pad_token_for(tokenizer)
        model = merged_policy(policy.model_path, policy.adapter, dtype)  # PPO's reference: this, LoRA off
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        value = AutoModelForSequenceClassification.from_pretrained(policy.model_path, num_labels=1, dtype=dtype)
        backbone = getattr(value, value.base_model_prefix)
        backbone.load_state_dict(getattr(model, model.base_model_prefix).state_dict())
        value.config.pad_token_id = tokenizer.pad_token_id
        lora = dict(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=0.0, target_modules="all-linear")
        value = get_peft_model(value, LoraConfig(task_type="SEQ_CLS", **lora))

        prompt_format = getattr(policy, "prompt_format", "chat")
        queries: dict[tuple[int, ...], str] = {}
        rows = []
        for simple in dataset:
            text = tokenizer.apply_chat_template(
                build_messages(simple, policy.target, prompt_format), add_generation_prompt=True, tokenize=False
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # as the transformers engine does
            queries[tuple(ids)] = simple
            rows.extend({"input_ids": ids} for _ in range(rl.samples_per_prompt))

        resume = process.broadcast(latest_checkpoint(checkpoints, log) if process.is_main else None)
        done, folder = resume or (0, None)
        moved = rollout.rewind(done)  # every process, with or without a checkpoint
        if resume or moved:
            log(f"trl_ppo: resuming after update {done} from {folder or 'the start'}; {moved} trace rows set aside")
        remaining = rl.max_steps - done
        args = PPOConfig(
            output_dir=str(checkpoints),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=1,
            num_mini_batches=self.num_mini_batches,
            total_episodes=max(remaining, 1) * batch * process.world_size,
            local_rollout_forward_batch_size=batch,  # one rollout call per update: the step's videos at once
            num_ppo_epochs=self.num_ppo_epochs,
            learning_rate=rl.learning_rate,
            lr_scheduler_type="constant",
            response_length=rl.max_new_tokens,
            temperature=rl.temperature,
            stop_token="eos",
            kl_coef=self.kl_coef,
            cliprange=self.cliprange,
            vf_coef=self.vf_coef,
            missing_eos_penalty=self.missing_eos_penalty,
            num_sample_generations=0,
            save_strategy="no",  # checkpoints are this plugin's own (TRL's PPO cannot resume from its own)
            logging_steps=1,
            seed=context.seed + done,
            report_to="none",
            use_cpu=use_cpu,
            bf16=not use_cpu,
            disable_tqdm=True,
        )
        bridge = rollout_reward_model(tokenizer, queries, rollout, log)
        saver = _checkpointer(checkpoints, done, self.save_steps, self.keep_checkpoints, process)
        trainer = PPOTrainer(
            args=args,
            processing_class=tokenizer,
            model=model,
            # one process: the reference is the policy with its LoRA switched off (no copy). Several: TRL 1.12's
            # adapter switch reaches through the DDP wrapper and fails, so the reference is a frozen copy of the
            # same merged SFT weights (one more model in memory per process)
            ref_model=merged_policy(policy.model_path, policy.adapter, dtype).eval() if process.distributed else None,
            reward_model=bridge,
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(rows[:batch]),
            value_model=value,
            peft_config=LoraConfig(task_type="CAUSAL_LM", **lora),
            callbacks=[saver],
        )
        saver.trainer = trainer
        if resume:
            set_peft_model_state_dict(trainer.policy_model, load_file(folder / "policy" / "adapter_model.safetensors"))
            set_peft_model_state_dict(value, load_file(folder / "value" / "adapter_model.safetensors"))
            trainer.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        if remaining > 0:
            try:
                trainer.train()
            except BudgetExceeded as stop:
                log(f"stage 2 stopped before the budget: {stop}")
                saver.save()
        final = out_dir / "adapter"
        if process.is_main:
            fold_adapters(trainer.policy_model, policy.adapter, final, policy.model_path)
            tokenizer.save_pretrained(str(final))
            metadata = {**(read_metadata(policy.adapter) if policy.adapter else {}), "prompt_format": prompt_format}
            metadata["stage2"] = {"trainer": "trl_ppo", "updates": saver.step, "stage1_adapter": policy.adapter}
            (final / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        process.barrier()
        return str(final)


def _checkpointer(directory: Path, offset: int, every: int, keep: int, process: ProcessContext):
    """A TrainerCallback that writes step-N checkpoints every `every` updates (N counts across resumes), from
    the main process (every process holds the same weights and optimizer state)."""
    from transformers import TrainerCallback

    class Checkpointer(TrainerCallback):
        def __init__(self):
            self.trainer = None
            self.step = offset

        def on_step_end(self, args, state, control, **kwargs):
            self.step = offset + state.global_step
            if self.step % every == 0:
                self.save()
            return control

        def save(self) -> Path:
            folder = directory / f"step-{self.step}"
            if process.is_main:
                self._write(folder)
            process.barrier()
            return folder

        def _write(self, folder: Path) -> None:
            import torch

            if (folder / "done.json").exists():
                return
            partial = directory / f".partial-step-{self.step}"
            shutil.rmtree(partial, ignore_errors=True)
            self.trainer.policy_model.save_pretrained(str(partial / "policy"))
            self.trainer.value_model.save_pretrained(str(partial / "value"))
            torch.save(self.trainer.optimizer.state_dict(), partial / "optimizer.pt")
            (partial / "done.json").write_text(json.dumps({"updates": self.step}), encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)  # complete or absent: a kill mid-save leaves only a .partial folder
            numbered = sorted((int(p.name[5:]), p) for p in directory.glob("step-*") if p.name[5:].isdigit())
            for _, old in numbered[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    return Checkpointer()


@hookimpl
def enhancer_policy_trainers():
    return {"trl_ppo": PPOPolicyTrainer}
