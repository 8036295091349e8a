"""Training: the two-stage recipe (`orchestrator`), stage 1 SFT (`sft`), preference training on paid-for rewards
(`dpo`), the rollout that turns rewrites into rewards (`rollout`), LoRA folding (`adapters`), resuming
(`checkpoints`) and the process context for runs on several processes (`distributed`). Importing the package
loads nothing heavy."""
