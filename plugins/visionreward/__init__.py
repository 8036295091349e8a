"""Reward scorer "visionreward": VisionReward-Video's checklist scoring. A vision-language judge answers yes/no
questions about the video (each question mentions the prompt it was made from); yes counts +1 and no -1, and
the score is the mean of the answers times the checklist's weights, as VisionReward defines it.

The checklist (VisionReward_video_qa_select.txt, one question per line with a [[prompt]] placeholder) and the
weights (weight.json, one number per question) ship with VisionReward: this plugin reads them from paths you
give and does not carry copies. The model (THUDM/VisionReward-Video, CogVLM2-based, ~25 GB in bf16) loads only
with transformers 4.42, so it runs in its own environment behind HTTP:

    # in an environment with transformers==4.42.*, torch, decord and `pip install --no-deps enhancer`
    enhancer reward serve visionreward --option model=/models/VisionReward-Video \\
        --option questions=/src/VisionReward/VisionReward-Video/VisionReward_video_qa_select.txt \\
        --option weights=/src/VisionReward/VisionReward-Video/weight.json --port 8200
    # in enhancer's environment
    enhancer run --reward visionreward ...   # recipe: reward_options: {visionreward: {url: http://gpu-1:8200}}

Differences from the reference script, on purpose: each question is answered from one forward pass (the logits
of "yes" against "no" at the answer position) instead of a generate call, and questions are batched per video;
frames are sampled with decord the way the reference does (one per second, at most 24).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from enhancer import hookimpl

PLACEHOLDER = "[[prompt]]"


class ChecklistError(ValueError):
    """The checklist or weight file is missing or malformed."""


def load_checklist(questions: str | None, weights: str | None) -> tuple[list[str], np.ndarray]:
    where = "VisionReward's checklist and weights ship with VisionReward (VisionReward-Video/ in its repository)"
    if not questions or not weights:
        raise ChecklistError(f"give --option questions=FILE and --option weights=FILE: {where}")
    for path in (questions, weights):
        if not Path(path).is_file():
            raise ChecklistError(f"{path}: no such file; {where}")
    lines = [line.strip() for line in Path(questions).read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        values = json.loads(Path(weights).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ChecklistError(f"{weights}: not JSON ({error}); expected a list of numbers") from error
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise ChecklistError(f"{weights}: expected a JSON list of numbers, one per question")
    if len(values) != len(lines):
        raise ChecklistError(f"{len(lines)} questions in {questions} but {len(values)} weights in {weights}")
    if not lines:
        raise ChecklistError(f"{questions}: no questions")
    return lines, np.asarray(values, dtype=np.float64)


def checklist_score(answers: np.ndarray, weights: np.ndarray) -> float:
    """Mean of answers (+1 yes, -1 no; or soft values in [-1, 1]) times weights."""
    return float(np.mean(np.asarray(answers, dtype=np.float64) * weights))


def frames_per_second(path: str, max_frames: int = 24) -> np.ndarray:
    """One frame per second of video, the frame nearest each whole second, at most `max_frames`: VisionReward's
    'chat' sampling. uint8 (T, H, W, 3)."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    stamps = [start for start, _ in reader.get_frame_timestamp(np.arange(len(reader)))]
    ids = []
    for second in range(round(max(stamps)) + 1):
        ids.append(int(np.argmin([abs(stamp - second) for stamp in stamps])))
        if len(ids) >= max_frames:
            break
    try:
        return reader.get_batch(ids).asnumpy()
    except decord.DECORDError:
        # decord cannot copy out frames whose row stride ffmpeg padded (seen with 48-pixel-wide videos on an
        # AVX-512 machine); imageio's ffmpeg reader gives the same frames
        import imageio.v2 as imageio

        with imageio.get_reader(str(path)) as frames:
            wanted, picked = set(ids), {}
            for index, frame in enumerate(frames):
                if index in wanted:
                    picked[index] = frame
                if index >= max(ids):
                    break
        return np.stack([picked[i] for i in ids])


def batched_yes_no_logits(model, inputs: list[dict], yes_id: int, no_id: int, pad_id: int, batch_size: int = 8):
    """One forward pass per batch of questions: left-pad each question's inputs, and read the logits of "yes" and
    "no" at the last position, where the answer's first token would be generated. `inputs` are per-question dicts
    of 1-D tensors (input_ids, attention_mask, and token_type_ids for CogVLM2) plus optional non-tensor entries
    (images) passed through as lists."""
    import torch

    out: list[tuple[float, float]] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        longest = max(len(item["input_ids"]) for item in chunk)
        batch: dict = {}
        for key in chunk[0]:
            values = [item[key] for item in chunk]
            if isinstance(values[0], torch.Tensor) and values[0].dim() == 1:
                fill = pad_id if key == "input_ids" else 0
                batch[key] = torch.stack(
                    [torch.cat([torch.full((longest - len(v),), fill, dtype=v.dtype), v]) for v in values]
                )
            else:
                batch[key] = values
        if "attention_mask" in batch and "position_ids" not in batch:
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(**batch).logits[:, -1, :].float()
        out += [(float(row[yes_id]), float(row[no_id])) for row in logits]
    return out


class CogVLM2Judge:
    """THUDM/VisionReward-Video through its own remote code (transformers 4.42). Not exercised by the test suite:
    it needs the 25 GB model, a GPU and that transformers; see the module docstring."""

    def __init__(self, model: str, device: str | None = None, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        bf16 = self.device.startswith("cuda") and torch.cuda.get_device_capability()[0] >= 8
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=True)
        self.model = (
            AutoModelForCausalLM.from_pretrained(model, torch_dtype=self.dtype, trust_remote_code=True)
            .eval()
            .to(self.device)
        )
        self.batch_size = batch_size
        self.yes_id = self.tokenizer.encode("yes", add_special_tokens=False)[0]
        self.no_id = self.tokenizer.encode("no", add_special_tokens=False)[0]
        self.pad_id = 128002  # the pad id the reference generate call uses for this Llama-3-based model

    def answer_logits(self, frames: np.ndarray, queries: list[str]) -> list[tuple[float, float]]:
        import torch

        video = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (C, T, H, W), as the reference passes it
        inputs = []
        for query in queries:
            built = self.model.build_conversation_input_ids(
                tokenizer=self.tokenizer, query=query, images=[video], history=[], template_version="chat"
            )
            inputs.append(
                {
                    "input_ids": built["input_ids"].to(self.device),
                    "token_type_ids": built["token_type_ids"].to(self.device),
                    "attention_mask": built["attention_mask"].to(self.device),
                    "images": [built["images"][0].to(self.device).to(self.dtype)],
                }
            )
        return batched_yes_no_logits(self.model, inputs, self.yes_id, self.no_id, self.pad_id, self.batch_size)


def import_judge(spec: str):
    """A judge class named as "package.module:Name", instantiated with no arguments. It answers
    `answer_logits(frames, queries) -> [(yes_logit, no_logit), ...]` like CogVLM2Judge."""
    import importlib

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"judge={spec!r}: write it as package.module:ClassName")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"judge={spec!r}: cannot import it ({error})") from error
    judge = factory()
    if not callable(getattr(judge, "answer_logits", None)):
        raise ValueError(f"judge={spec!r}: it has no answer_logits(frames, queries) method")
    return judge


class VisionRewardScorer:
    """Checklist scoring by a yes/no judge: in this process (`model=`), or through `enhancer reward serve` (`url=`)."""

    name = "visionreward"

    def __init__(
        self,
        questions: str | None = None,
        weights: str | None = None,
        model: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        soft: bool = False,
        max_frames: int = 24,
        batch_size: int = 8,
        timeout_s: float = 600.0,
        judge=None,
    ):
        self.url = url.rstrip("/") if url else None
        self.api_key = api_key
        self.timeout_s = float(timeout_s)
        self.soft = bool(soft)
        self.max_frames = int(max_frames)
        if self.url:
            return  # the server holds the checklist and the model
        self.questions, self.weights = load_checklist(questions, weights)
        if isinstance(judge, str):  # "package.module:Name", e.g. from `--option judge=...`: another VLM judge
            judge = import_judge(judge)
        if judge is None:
            if not model:
                raise ValueError(
                    "visionreward needs url=http://HOST:PORT (a server started with `enhancer reward serve "
                    "visionreward` in an environment with transformers 4.42) or model=PATH in such an environment"
                )
            judge = CogVLM2Judge(model, batch_size=batch_size)
        self.judge = judge

    def score_one(self, video_path: str, prompt: str) -> dict:
        frames = frames_per_second(video_path, self.max_frames)
        queries = [question.replace(PLACEHOLDER, prompt) for question in self.questions]
        logits = self.judge.answer_logits(frames, queries)
        if self.soft:  # P(yes) among {yes, no}, mapped to [-1, 1]
            answers = np.array([2 / (1 + math.exp(no - yes)) - 1 for yes, no in logits])
        else:
            answers = np.array([1.0 if yes > no else -1.0 for yes, no in logits])
        return {"score": checklist_score(answers, self.weights), "answers": answers.tolist()}

    def score(self, samples):
        scores: list[float | None] = []
        for sample in samples:
            if not sample.video_path or not Path(sample.video_path).is_file():
                scores.append(None)
                continue
            try:
                if self.url:
                    scores.append(self._remote(sample.video_path, sample.simple))
                else:
                    scores.append(round(self.score_one(sample.video_path, sample.simple)["score"], 6))
            except Exception:  # an unreadable video or an unreachable server: could not score, not a 0
                scores.append(None)
        return scores

    def _remote(self, video_path: str, prompt: str) -> float | None:
        from enhancer.serve.rewards import score_remote

        return score_remote(self.url, video_path, prompt, api_key=self.api_key, timeout=self.timeout_s)


class VideoAlignScorer:
    """VideoAlign's VideoReward (Qwen2-VL-2B): visual quality (VQ), motion quality (MQ) and text alignment (TA),
    each a normalised score, and Overall = their sum. It runs from a checkout of the VideoAlign repository
    (`repo=`, its own environment) with its checkpoint (`checkpoint=`), or behind `enhancer reward serve
    videoalign` (`url=`). `dimension` picks VQ, MQ, TA or Overall; with `squash` (default) the score goes through
    a logistic function (Overall divided by 3 first) so that it lies in (0, 1) like the text scores it is mixed
    with. Not exercised by the test suite beyond its plumbing: the model needs a GPU and its repository."""

    name = "videoalign"
    DIMENSIONS = ("VQ", "MQ", "TA", "Overall")

    def __init__(
        self,
        repo: str | None = None,
        checkpoint: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        dimension: str = "Overall",
        squash: bool = True,
        device: str | None = None,
        timeout_s: float = 600.0,
        inferencer=None,
    ):
        if dimension not in self.DIMENSIONS:
            raise ValueError(f"dimension {dimension!r}: choose one of {', '.join(self.DIMENSIONS)}")
        self.dimension, self.squash = dimension, bool(squash)
        self.url, self.api_key, self.timeout_s = (url.rstrip("/") if url else None), api_key, float(timeout_s)
        if self.url:
            return
        if inferencer is None:
            if not repo or not checkpoint or not (Path(repo) / "inference.py").is_file():
                raise ValueError(
                    "videoalign needs url=http://HOST:PORT (`enhancer reward serve videoalign` in VideoAlign's "
                    "environment), or repo=CHECKOUT (with inference.py) and checkpoint=DIR in that environment"
                )
            import sys

            import torch

            sys.path.insert(0, str(Path(repo).resolve()))
            from inference import VideoVLMRewardInference  # VideoAlign's own module, from its checkout

            inferencer = VideoVLMRewardInference(
                checkpoint, device=device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype=torch.bfloat16
            )
        self.inferencer = inferencer

    def _value(self, reward: dict) -> float:
        raw = float(reward[self.dimension])
        if not self.squash:
            return raw
        scaled = raw / 3 if self.dimension == "Overall" else raw
        return 1 / (1 + math.exp(-scaled))

    def score(self, samples):
        valid = [i for i, s in enumerate(samples) if s.video_path and Path(s.video_path).is_file()]
        scores: list[float | None] = [None] * len(samples)
        if not valid:
            return scores
        try:
            if self.url:
                from enhancer.serve.rewards import score_remote

                for i in valid:
                    scores[i] = score_remote(
                        self.url, samples[i].video_path, samples[i].simple, api_key=self.api_key,
                        timeout=self.timeout_s,
                    )  # fmt: skip
                return scores
            rewards = self.inferencer.reward(
                [samples[i].video_path for i in valid], [samples[i].simple for i in valid], use_norm=True
            )
            for i, reward in zip(valid, rewards, strict=True):
                scores[i] = round(self._value(reward), 6)
        except Exception:  # could not score: None, never a fake 0
            return [None] * len(samples)
        return scores


@hookimpl
def enhancer_reward_scorers():
    return {"visionreward": VisionRewardScorer, "videoalign": VideoAlignScorer}
