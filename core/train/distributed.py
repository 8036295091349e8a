"""Which process this is when a run is launched on several, and the few collective steps the core needs.

    torchrun --nproc_per_node 2 -m enhancer.cli run --recipe R                         # CPU: 2 processes, gloo
    accelerate launch --multi_gpu --num_processes 2 -m enhancer.cli run --recipe R     # the same through accelerate
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m enhancer.cli run --recipe R   # GPUs: nccl

The launcher (torchrun, accelerate, deepspeed) sets WORLD_SIZE, RANK and LOCAL_RANK; `current_process()` reads
them and starts the process group through accelerate's `PartialState` (gloo on CPU, nccl on GPUs), the same
state TRL's and transformers' trainers use afterwards, so nothing is initialised twice. Under one process every
method here is a no-op and nothing distributed is imported.

What the core does with it: one process (the main one, rank 0) writes the run's files (config.yaml, traces,
summary.json, model cards, adapters); the others wait at a barrier where they would read them. Training itself
(DDP, FSDP, DeepSpeed) is the trainers' business: TRL and transformers handle it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# accelerate 1.x starts several CPU processes only through MPI (with a hostfile); otherwise `--cpu --num_processes N`
# runs one process and leaves this trace: MASTER_PORT set, WORLD_SIZE not
ONE_CPU_PROCESS = (
    "accelerate launch --cpu --num_processes N started ONE process (accelerate runs several CPU processes only "
    "through MPI); for N processes on CPUs use `accelerate launch --multi_gpu --num_processes N ...` (on a machine "
    "without GPUs each process then runs on the CPU over gloo) or `torchrun --nproc_per_node N -m enhancer.cli ...`"
)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ProcessContext:
    """This process's place in the run: rank (0 = main), world size, and rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def label(self) -> str:
        """'' alone, 'rank 1/2' under several processes: for log lines."""
        return f"rank {self.rank}/{self.world_size}" if self.distributed else ""

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order, on every process (picklable values)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value: Any) -> Any:
        """The main process's `value`, on every process."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on the main process first (it writes, e.g. a model cache), then on the others."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def logger(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """`log` with this process's rank in front of each message, when there are several."""
        if not self.distributed:
            return log
        return lambda message: log(f"[{self.label}] {message}")


@functools.cache
def current_process() -> ProcessContext:
    """The context of this process, from the launcher's environment (read once); starts the process group when
    there are several processes and it is not started yet."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if "WORLD_SIZE" not in os.environ and "MASTER_PORT" in os.environ and _truthy("ACCELERATE_USE_CPU"):
        warnings.warn(ONE_CPU_PROCESS, stacklevel=2)
    if world_size <= 1:
        return ProcessContext()
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    if not dist.is_initialized():
        # the state transformers' TrainingArguments and TRL build later; cpu=True picks gloo (MULTI_CPU)
        PartialState(cpu=not torch.cuda.is_available())
    return ProcessContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )
