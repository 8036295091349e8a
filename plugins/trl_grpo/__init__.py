"""Policy trainer "trl_grpo": TRL's GRPOTrainer with the core's rollout as its reward function.

Each step samples `samples_per_prompt` enhancements for `prompts_per_step` RL prompts; the rollout turns every
one into a video and a reward, and GRPO raises the likelihood of the enhancements that beat their group's
mean. LoRA training continues the stage-1 adapter. On CPU: `use_cpu=True, bf16=False` (set automatically).

Options (`trainer_options` in a recipe): `algorithm: rloo` swaps in TRL's RLOOTrainer (the same group of
samples, each judged against the mean of the others); `use_vllm: true` generates with vLLM on the GPU,
`vllm_mode: colocate` (in the training process) or `server` (`trl vllm-serve` elsewhere, at
`vllm_server_base_url`). The reward function runs the rollout once per step for the whole batch, so all of a
step's videos (every group) are generated concurrently.

    enhancer run --backend synthetic --reward keep,coverage,clean --trainer trl_grpo
    torchrun --nproc_per_node 2 -m enhancer.cli run --recipe R                 # 2 CPU processes (gloo)

Several processes: each update's `prompts_per_step x samples_per_prompt` rewrites are split evenly over them
(TRL's per-device batch), each process's share goes through the rollout (one shared video cache and budget),
and TRL gathers the rewards for the group advantages. vLLM in server mode generates for all of them from its own
GPU: `trl vllm-serve --model BASE` there, then the training processes on the other GPUs (README, "Scaling out").
"""

from __future__ import annotations

from enhancer import hookimpl
from enhancer.contracts import TrainContext
from enhancer.prompts import build_messages
from enhancer.train.checkpoints import resume_point
from enhancer.train.rollout import BudgetExceeded


class GRPOPolicyTrainer:
    """TRL GRPOTrainer; rewards come from the core's rollout (video backend + scorers)."""

    name = "trl_grpo"

    ALGORITHMS = ("grpo", "rloo")
    VLLM_MODES = ("colocate", "server")

    def __init__(
        self,
        beta: float = 0.0,
        save_steps: int = 10,
        logging_steps: int = 1,
        algorithm: str = "grpo",
        use_vllm: bool = False,
        vllm_mode: str = "colocate",
        vllm_server_base_url: str | None = None,
        vllm_gpu_memory_utilization: float = 0.3,
    ):
        if algorithm not in self.ALGORITHMS:
            raise ValueError(f"trl_grpo: algorithm must be one of {', '.join(self.ALGORITHMS)}, got {algorithm!r}")
        if vllm_mode not in self.VLLM_MODES:
            raise ValueError(f"trl_grpo: vllm_mode must be one of {', '.join(self.VLLM_MODES)}, got {vllm_mode!r}")
        if use_vllm and vllm_mode == "server" and not vllm_server_base_url:
            raise ValueError("trl_grpo: vllm_mode server needs vllm_server_base_url (start it with `trl vllm-serve`)")
        self.beta = beta  # KL weight to the starting policy; 0 (TRL's default) needs no reference model
        self.save_steps = save_steps
        self.logging_steps = logging_steps
        self.algorithm = algorithm  # rloo: TRL's RLOOTrainer, leave-one-out baseline within each group
        self.vllm = (
            {
                "use_vllm": True,
                "vllm_mode": vllm_mode,
                "vllm_gpu_memory_utilization": vllm_gpu_memory_utilization,
                **({"vllm_server_base_url": vllm_server_base_url} if vllm_server_base_url else {}),
            }
            if use_vllm
            else {}
        )

    def train(self, policy, dataset, rollout, context: TrainContext) -> str:
        import torch
        from datasets import Dataset
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

        Config, Trainer = (GRPOConfig, GRPOTrainer) if self.algorithm == "grpo" else (RLOOConfig, RLOOTrainer)
        if self.vllm and not torch.cuda.is_available():
            raise RuntimeError("trl_grpo: use_vllm needs a CUDA GPU; leave it off on CPU")

        out_dir, process, log = context.out_dir, context.process, context.log
        use_cpu = not torch.cuda.is_available()
        tokenizer = AutoTokenizer.from_pretrained(policy.model_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            policy.model_path, dtype=torch.float32 if use_cpu else torch.bfloat16
        )
        if policy.adapter:
            model = PeftModel.from_pretrained(model, policy.adapter, is_trainable=True)
        rl = context.rl
        prompt_format = getattr(policy, "prompt_format", "chat")
        rows = [{"prompt": build_messages(p, policy.target, prompt_format), "simple_prompt": p} for p in dataset]
        args = Config(
            output_dir=str(out_dir / "checkpoints"),
            max_steps=rl.max_steps,
            # the update's rewrites split over the processes (RunConfig.validate_for checked that they divide)
            per_device_train_batch_size=rl.prompts_per_step * rl.samples_per_prompt // process.world_size,
            num_generations=rl.samples_per_prompt,
            gradient_accumulation_steps=1,
            learning_rate=rl.learning_rate,
            temperature=rl.temperature,
            max_completion_length=rl.max_new_tokens,
            beta=self.beta,
            logging_steps=self.logging_steps,
            save_steps=self.save_steps,
            seed=context.seed,
            report_to="none",
            use_cpu=use_cpu,
            bf16=not use_cpu,
            disable_tqdm=True,
            **self.vllm,
        )
        trainer = Trainer(
            model=model,
            reward_funcs=rollout.as_reward_function(),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        # one reward call per update: rollouts after the checkpoint belong to updates the kill lost
        step, checkpoint = resume_point(out_dir / "checkpoints", process, log)
        moved = rollout.rewind(step)
        if checkpoint or moved:
            log(f"trl_grpo: resuming at update {step} from {checkpoint or 'the start'}; {moved} trace rows set aside")
        try:
            trainer.train(resume_from_checkpoint=checkpoint)
        except BudgetExceeded as stop:
            log(f"stage 2 stopped before the budget: {stop}")
        final = out_dir / "adapter"
        trainer.save_model(str(final))  # every process calls it; transformers lets the main one write
        if process.is_main:
            tokenizer.save_pretrained(str(final))
        process.barrier()
        return str(final)


@hookimpl
def enhancer_policy_trainers():
    return {"trl_grpo": GRPOPolicyTrainer}
