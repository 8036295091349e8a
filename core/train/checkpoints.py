"""Which checkpoint a resumed run continues from: the newest complete one.

transformers' Trainer (and so TRL's SFT, DPO and GRPO trainers) saves `checkpoint-N` folders and writes
trainer_state.json last. A folder without a readable trainer_state.json was cut short by a kill mid-save;
`Trainer.train(resume_from_checkpoint=True)` would pick it anyway (the highest N) and die on the missing file.
`resume_point` skips it, moves it to DIR/incomplete/ so the Trainer's own rotation never counts it, and says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from enhancer import logs
from enhancer.train.distributed import ProcessContext

STATE_FILE = "trainer_state.json"


def _global_step(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resume_point(
    directory: str | Path, process: ProcessContext | None = None, log=logs.info
) -> tuple[int, str | None]:
    """(global step, checkpoint folder) to resume from, or (0, None) when there is no complete checkpoint.
    Every process calls it; the main one moves incomplete folders aside, and all get the same answer."""
    process = process or ProcessContext()
    directory = Path(directory)
    answer: tuple[int, str | None] = (0, None)
    if process.is_main and directory.is_dir():
        numbered = sorted(
            ((int(p.name.split("-")[1]), p) for p in directory.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
            reverse=True,
        )
        for _number, folder in numbered:
            step = _global_step(folder)
            if step is not None:
                answer = (step, str(folder))
                break
            aside = directory / "incomplete" / folder.name
            shutil.rmtree(aside, ignore_errors=True)
            aside.parent.mkdir(exist_ok=True)
            folder.rename(aside)
            log(
                f"checkpoint {folder} is incomplete (no readable {STATE_FILE}: killed mid-save?); skipped, moved to {aside}"
            )
    return process.broadcast(answer)
