"""Generation engines behind `Enhancer`: `llamacpp` (llama.cpp through the prebuilt xllamacpp wheel: the default for
the embedded model), `transformers` (batched, CPU or GPU: any Hugging Face model, training and eval parity),
`openai` (any OpenAI-compatible chat endpoint) and `vllm` (GPU); each is imported only when chosen.

Every engine has one method, `generate(conversations, *, n, seed, temperature, max_new_tokens)`, returning one
item per conversation: a `Generation` (n texts) or the exception that stopped that conversation, so one
failure never sinks the rest of a batch. `generate` also takes `should_stop`, a callable asked as the work goes
(llamacpp and transformers: at every token; openai: before each request; vllm: never): once it returns True the
call ends early, with partial texts or `GenerationStopped` for conversations not begun. Optional:
`stream(conversation, *, on_text, seed, temperature, max_new_tokens)` for one rewrite whose text `on_text` gets as
it comes (llamacpp, transformers, openai), and
`concurrency`, how many calls may run at once (llama.cpp's slots, concurrent HTTP requests; 1 when absent).
"""

from __future__ import annotations

import codecs
import json
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

ENGINES = ("auto", "llamacpp", "transformers", "openai", "vllm")  # auto: llamacpp for the embedded model


class EngineUnavailableError(RuntimeError):
    """The engine cannot run here (a package or a GPU is missing)."""


class GenerationStopped(RuntimeError):
    """`should_stop()` returned True before this conversation was generated (e.g. its client left)."""

    def __init__(self):
        super().__init__("not generated: should_stop() returned True before it began")


def _stop_criteria(should_stop):
    """A transformers StoppingCriteria that ends every row of `generate` once `should_stop()` is True."""
    import torch
    from transformers import StoppingCriteria

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return Stop()


@dataclass
class Generation:
    texts: list[str]
    truncated: list[bool] = field(default_factory=list)  # True where max_new_tokens cut the text


def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 matrix instructions (AVX512-BF16 or AMX), where bf16 inference is faster
    than float32 (measured 1.55x at batch 32 on this project's 2-core machine, docs/benchmarks.md)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_dtype(device: str) -> str:
    if device.startswith("cuda"):
        return "bfloat16"
    return "bfloat16" if cpu_has_bf16() else "float32"


def llamacpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("xllamacpp") is not None


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
    return engine


class TransformersEngine:
    """Batched `model.generate` with left padding; prompts are sorted by length so batches pad little."""

    name = "transformers"

    def __init__(
        self,
        model_path: str,
        adapter: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 16,
        repetition_penalty: float = 1.1,  # SmolLM-sized models loop without it
        top_p: float = 0.9,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype or default_dtype(self.device))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
        if adapter:
            from peft import PeftModel

            # Merging folds the LoRA update into the base weights: inference then costs the same as the base.
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.repetition_penalty = repetition_penalty
        self.top_p = top_p

    def render(self, conversation: list[dict[str, str]]) -> str:
        if conversation[0]["role"] == "completion":  # the original project's plain "Input:/Output:" text
            return conversation[0]["content"]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(message["content"] for message in conversation)  # base models: plain completion

    def generate(self, conversations, *, n=1, seed=0, temperature=0.7, max_new_tokens=256, should_stop=None):
        import torch
        from transformers import StoppingCriteriaList

        texts = [self.render(c) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Generation | Exception | None] = [None] * len(texts)
        extra = (
            {} if should_stop is None else {"stopping_criteria": StoppingCriteriaList([_stop_criteria(should_stop)])}
        )
        torch.manual_seed(seed)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if should_stop is not None and should_stop():  # the batches not begun are not generated
                generated = [GenerationStopped() for _ in batch]
            else:
                try:
                    generated = self._generate_batch(
                        [texts[i] for i in batch], n, temperature, max_new_tokens, **extra
                    )
                except Exception as error:  # e.g. out of memory on one batch: the others still run
                    generated = [error] * len(batch)
            for index, item in zip(batch, generated, strict=True):
                results[index] = item
        return results

    def stream(self, conversation, *, on_text, seed=0, temperature=0.0, max_new_tokens=256) -> Generation:
        """One rewrite through transformers' TextStreamer: `on_text(piece)` gets the text a word at a time as
        generate writes it (return True to stop; generate ends at the next token)."""
        import torch
        from transformers import StoppingCriteriaList, TextStreamer

        stopped = []

        class Forward(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False):
                if text and not stopped and on_text(text):
                    stopped.append(True)

        torch.manual_seed(seed)
        streamer = Forward(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        extra = {"streamer": streamer, "stopping_criteria": StoppingCriteriaList([_stop_criteria(lambda: stopped)])}
        return self._generate_batch([self.render(conversation)], 1, temperature, max_new_tokens, **extra)[0]

    def _generate_batch(self, texts, n, temperature, max_new_tokens, **extra):
        import torch
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = temperature > 0
        # The penalty counts generated tokens only: applied to the prompt too (generate's default), it pushes the
        # model away from the user's own words, which a rewrite must keep. Prompts are left-padded, so the first
        # input_ids.shape[1] tokens of every row are its prompt.
        penalty = LogitsProcessorList(
            [
                RepetitionPenaltyLogitsProcessor(
                    self.repetition_penalty, prompt_ignore_length=encoded["input_ids"].shape[1]
                )
            ]
            if self.repetition_penalty != 1.0
            else []
        )
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=self.top_p if sampling else None,
                top_k=None,
                logits_processor=penalty,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
                **extra,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        eos_ids = self.model.generation_config.eos_token_id
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        finished = [any(int(t) in eos_ids for t in row) for row in new_tokens]
        return [
            Generation(decoded[i * n : (i + 1) * n], [not f for f in finished[i * n : (i + 1) * n]])
            for i in range(len(texts))
        ]


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"  # how reasoning models (Qwen3, DeepSeek-R1...) mark their thinking


class ThinkingUnfinished(RuntimeError):
    """The model stopped while still thinking: its reply is an unclosed <think> block, with no rewrite after it."""

    def __init__(self, max_new_tokens: int):
        super().__init__(
            f"the model was still thinking when it stopped (an unclosed {THINK_OPEN} block, max_tokens "
            f"{max_new_tokens}), so it wrote no rewrite: raise --max-new-tokens (or the request's max_tokens) to let it "
            "finish thinking, or turn thinking off at the endpoint"
        )


def strip_thinking(text: str) -> tuple[str, bool]:
    """`text` without its <think>...</think> blocks, and whether a <think> was left open (the model ran out of tokens
    while thinking: what follows it is thinking, not an answer, and is dropped too). A reply that holds only the
    closing tag (chat templates that open the block in the prompt, as DeepSeek-R1's do) keeps what follows it."""
    if THINK_CLOSE in text and (THINK_OPEN not in text or text.find(THINK_CLOSE) < text.find(THINK_OPEN)):
        text = text.split(THINK_CLOSE, 1)[1]
    kept = []
    while (start := text.find(THINK_OPEN)) >= 0:
        kept.append(text[:start])
        end = text.find(THINK_CLOSE, start + len(THINK_OPEN))
        if end < 0:
            return "".join(kept), True
        text = text[end + len(THINK_CLOSE) :]
    return "".join(kept) + text, False


class ThinkingFilter:
    """strip_thinking for a reply that streams: `feed(piece)` returns the text outside <think> blocks that may be
    shown now (a tail that could be the start of a tag waits for the next piece), `end()` what is left at the end."""

    def __init__(self):
        self.pending = ""
        self.thinking = False

    def feed(self, piece: str) -> str:
        self.pending += piece
        shown = []
        while True:
            tag = THINK_CLOSE if self.thinking else THINK_OPEN
            at = self.pending.find(tag)
            if at < 0:
                break
            if not self.thinking:
                shown.append(self.pending[:at])
            self.pending, self.thinking = self.pending[at + len(tag) :], not self.thinking
        held = next((n for n in range(len(tag) - 1, 0, -1) if self.pending.endswith(tag[:n])), 0)
        cut = len(self.pending) - held
        if not self.thinking:
            shown.append(self.pending[:cut])
        self.pending = self.pending[cut:]
        return "".join(shown)

    def end(self) -> str:
        rest, self.pending = ("" if self.thinking else self.pending), ""
        return rest


class OpenAIEngine:
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM's server, llama.cpp's server, Ollama...).

    Requests run concurrently; the SDK retries each one `retries` times with backoff, after which the
    conversation's item is the error (the Enhancer then falls back to the original prompt, with the reason).
    A reasoning model's <think>...</think> blocks are dropped before the cleanup (and never streamed); a reply that
    is only an unclosed <think> (the tokens ran out while it thought) is a ThinkingUnfinished error, not a rewrite.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None,
        base_url: str | None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        concurrency: int = 8,
    ):
        from openai import OpenAI

        api_key = api_key or os.environ.get("ENHANCER_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=retries)
        self.model = model
        self.concurrency = concurrency

    def _model_name(self) -> str:
        if not self.model:  # ask the server what it serves, as a local server usually serves exactly one model
            served = [m.id for m in self.client.models.list()]
            if not served:
                raise RuntimeError("the endpoint lists no models: pass --model with the served model's name")
            self.model = served[0]
        return self.model

    def generate(self, conversations, *, n=1, seed=0, temperature=0.7, max_new_tokens=256, should_stop=None):
        def one(conversation):
            if should_stop is not None and should_stop():  # a request under way runs to its end; no new one starts
                return GenerationStopped()
            return self._one(conversation, n, seed, temperature, max_new_tokens)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, conversations))

    def stream(self, conversation, *, on_text, seed=0, temperature=0.0, max_new_tokens=256) -> Generation:
        """One rewrite with `stream: true`: `on_text(piece)` gets each delta (return True to stop)."""
        response = self.client.chat.completions.create(
            model=self._model_name(),
            messages=[{**m, "role": "user"} if m["role"] == "completion" else m for m in conversation],
            seed=seed,
            temperature=temperature,
            max_tokens=max_new_tokens,
            stream=True,
        )
        pieces, finish, thoughts = [], None, ThinkingFilter()
        with response:
            for chunk in response:
                for choice in chunk.choices[:1]:
                    if choice.delta and choice.delta.content:
                        pieces.append(choice.delta.content)
                        shown = thoughts.feed(choice.delta.content)
                        if shown and on_text(shown):
                            return Generation([strip_thinking("".join(pieces))[0]], [False])
                    finish = choice.finish_reason or finish
        if rest := thoughts.end():
            on_text(rest)
        text, unfinished = strip_thinking("".join(pieces))
        if unfinished and not text.strip():
            raise ThinkingUnfinished(max_new_tokens)
        return Generation([text], [finish == "length" or unfinished])

    def _one(self, conversation, n, seed, temperature, max_new_tokens):
        try:
            model = self._model_name()
            texts: list[str] = []
            truncated: list[bool] = []
            thinking_only: list[bool] = []
            while len(texts) < n:  # some servers ignore `n` and return one choice
                response = self.client.chat.completions.create(
                    model=model,
                    messages=[{**m, "role": "user"} if m["role"] == "completion" else m for m in conversation],
                    n=n - len(texts),
                    seed=seed + len(texts),
                    temperature=temperature,
                    max_tokens=max_new_tokens,
                )
                if not response.choices:
                    raise RuntimeError("the endpoint returned no choices")
                for choice in response.choices:
                    text, unfinished = strip_thinking(choice.message.content or "")
                    texts.append(text)
                    truncated.append(choice.finish_reason == "length" or unfinished)
                    thinking_only.append(unfinished and not text.strip())
            if all(thinking_only[:n]):  # no rewrite at all; a variant that is only thinking is dropped as empty
                raise ThinkingUnfinished(max_new_tokens)
            return Generation(texts[:n], truncated[:n])
        except Exception as error:
            return error


class VLLMEngine:
    """vLLM offline inference on a GPU (`pip install 'enhancer[gpu]'`), with the adapter as a LoRA request."""

    name = "vllm"

    def __init__(self, model_path: str, adapter: str | None = None, *, max_lora_rank: int = 64, **llm_options):
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as error:
            raise EngineUnavailableError(
                f"the vllm engine needs vLLM and a CUDA GPU ({error}): install it with "
                "`pip install 'enhancer[gpu]'` on a GPU machine, or use --engine transformers"
            ) from error
        self._sampling_params = SamplingParams
        self.llm = LLM(model=model_path, enable_lora=adapter is not None, max_lora_rank=max_lora_rank, **llm_options)
        self.lora = LoRARequest("enhancer-adapter", 1, adapter) if adapter else None

    def generate(self, conversations, *, n=1, seed=0, temperature=0.7, max_new_tokens=256, should_stop=None):
        # should_stop is not asked: vLLM's offline generate has no hook between steps, and runs fast on a GPU anyway
        params = self._sampling_params(
            n=n, temperature=temperature, top_p=0.9, repetition_penalty=1.1, max_tokens=max_new_tokens, seed=seed
        )
        try:
            if conversations and conversations[0][0]["role"] == "completion":
                texts = [c[0]["content"] for c in conversations]
                outputs = self.llm.generate(texts, params, lora_request=self.lora, use_tqdm=False)
            else:
                outputs = self.llm.chat(conversations, params, lora_request=self.lora, use_tqdm=False)
        except Exception as error:
            return [error] * len(conversations)
        return [
            Generation([o.text for o in out.outputs], [o.finish_reason == "length" for o in out.outputs])
            for out in outputs
        ]


class LlamaCppEngine:
    """llama.cpp through the `xllamacpp` wheel (prebuilt for manylinux/macOS/Windows, in the default install: nothing
    compiles) on a GGUF file written by `enhancer export --gguf`, or the embedded model's export in the model cache.

    The prompt is the model's chat template rendered with jinja2 exactly as transformers renders it (the template
    comes from the export's sidecar, else from the GGUF's metadata), so both engines send the same text. Requests
    go to llama.cpp's server loop in-process: `parallel` slots decode together (continuous batching), which is how
    a batch, several variants and `enhancer serve`'s concurrent requests share the CPU.

    Decoding follows the transformers engine: greedy at temperature 0, else top-p 0.9 over the whole vocabulary
    (no top-k, no min-p), and a repetition penalty of 1.1 on generated tokens only (`request` says how). A single
    rewrite gives the same text for a seed every time; rewrites decoded side by side share llama.cpp's batches,
    which moves the last bits of the numbers, so their wording can differ at a near-tie (as on vLLM). Quality
    against the transformers engine: docs/evaluation.md."""

    name = "llamacpp"

    def __init__(
        self,
        gguf_path: str,
        *,
        n_ctx: int | None = None,
        parallel: int = 8,
        n_threads: int | None = None,
        repetition_penalty: float = 1.1,
        chat_template: dict | None = None,
    ):
        try:
            import xllamacpp
        except ImportError as error:  # a platform without a prebuilt wheel
            raise EngineUnavailableError(
                f"the llamacpp engine needs the xllamacpp wheel ({error}); use --engine transformers"
            ) from error
        if not str(gguf_path).endswith(".gguf") or not os.path.isfile(gguf_path):
            raise FileNotFoundError(
                f"--model {gguf_path}: the llamacpp engine needs a .gguf file; write one with `enhancer export --gguf`"
            )
        self.template = chat_template or gguf_chat_template(gguf_path)
        self._render = (
            _compile_template(self.template["chat_template"]) if self.template.get("chat_template") else None
        )
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf_path)
        # split between the slots: 1,024 tokens each by default, where the embedded model needs 808 at most
        params.n_ctx = n_ctx or 1024 * parallel
        params.n_parallel = parallel
        params.kv_unified = False  # one KV buffer per slot: a shared one halved batch throughput here
        threads = n_threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = 0  # errors only; llama.cpp logs every request otherwise
        self.server = xllamacpp.Server(params)
        # One token through the server loop before anything else: it shows the model answers, and xllamacpp's
        # Server can hang in its destructor when deleted before its loop has served a request (seen with n_ctx
        # 8192: `del` right after construction waited forever in a thread join).
        ready = self.server.handle_completions({"prompt": " ", "n_predict": 1, "cache_prompt": False})
        if "error" in ready:
            raise RuntimeError(f"llama.cpp could not run {gguf_path}: {ready['error'].get('message', ready['error'])}")
        self.parallel = parallel
        self.concurrency = parallel  # calls that may run at once (enhancer serve): the slots decode together
        self._free_slots: queue.SimpleQueue[int] = queue.SimpleQueue()  # a rewrite keeps its slot (and KV cache)
        for slot in range(parallel):
            self._free_slots.put(slot)
        self.repetition_penalty = repetition_penalty

    def render(self, conversation: list[dict[str, str]]) -> str:
        if conversation[0]["role"] == "completion":
            return conversation[0]["content"]
        if self._render is None:  # base models without a chat template: plain completion
            return "\n\n".join(message["content"] for message in conversation)
        return self._render(
            messages=conversation,
            add_generation_prompt=True,
            bos_token=self.template.get("bos_token") or "",
            eos_token=self.template.get("eos_token") or "",
        )

    def request(
        self,
        prompt: str,
        *,
        seed: int,
        temperature: float,
        max_new_tokens: int,
        stream=None,
        reuse: bool = False,
        should_stop=None,
    ) -> dict:
        """One completion on a slot of llama.cpp's server loop. `stream(text_piece)` gets the text as it comes (a
        token a piece) and stops the generation by returning True; so does `should_stop()`, asked at every token.

        The repetition penalty must count generated tokens only (as the transformers engine's does: penalising the
        prompt pushes the model off the user's own words, measured at -0.09 keep on data/eval), but llama.cpp's
        server counts the prompt's last tokens too and has no switch for it. So the rewrite is decoded in requests
        of growing length on one slot (1, 1, 2, 4, 8... tokens): each continues from the exact tokens so far, with
        the penalty window set to the number of tokens generated before it, which holds generated tokens only.
        The KV cache carries over, so the model's numbers are those of one long request; about ten requests
        per rewrite, a few milliseconds each.

        `reuse=True` lets the first request start from the slot's cache of an earlier prompt with the same opening
        (0.15 s saved per rewrite of the embedded model), but numbers computed that way differ in the last bits from
        a fresh start and can flip a greedy near-tie, so a single rewrite starts fresh: a seed gives the same text
        whatever ran before."""
        slot = self._free_slots.get()
        try:
            return self._decode(prompt, slot, seed, temperature, max_new_tokens, stream, reuse, should_stop)
        finally:
            self._free_slots.put(slot)

    def _decode(self, prompt, slot, seed, temperature, max_new_tokens, stream, reuse, should_stop) -> dict:
        ids: list[int] = []  # generated so far; the next request's prompt is the text plus these tokens
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two tokens
        pieces: list[str] = []
        state: dict = {"stop": False, "finish": None, "error": None}

        def on_chunk(chunk) -> bool:
            chunk = json.loads(chunk) if isinstance(chunk, str) else chunk
            if "error" in chunk:
                state["error"] = chunk["error"].get("message", chunk["error"])
            for choice in chunk.get("choices", []):
                for token in (choice.get("logprobs") or {}).get("content") or []:
                    ids.append(token["id"])
                    piece = decoder.decode(bytes(token["bytes"]))
                    if piece:
                        pieces.append(piece)
                        if stream is not None and stream(piece):
                            state["stop"] = True
                    if should_stop is not None and should_stop():
                        state["stop"] = True  # checked at every token, so a stop costs at most one more
                if choice.get("finish_reason"):
                    state["finish"] = choice["finish_reason"]
            return state["stop"]  # True ends the request in llama.cpp: its slot is free for the next one

        part = 0
        while len(ids) < max_new_tokens:
            before = len(ids)
            body = {
                "prompt": [prompt, *ids] if ids else prompt,  # text tokenized as transformers does: no BOS added
                "n_predict": min(max(before, 1), max_new_tokens - before),
                "temperature": temperature,
                "top_p": 0.9 if temperature > 0 else 1.0,
                "top_k": 0 if temperature > 0 else 1,
                "min_p": 0.0,
                "seed": (seed + 104_729 * part) % 2**32,
                "repeat_penalty": self.repetition_penalty if before else 1.0,
                "repeat_last_n": before,  # the tokens generated so far, and no prompt token
                "cache_prompt": reuse or before > 0,
                "id_slot": slot,
                "n_probs": 1,  # each token's id and bytes come back, so the next request continues exactly
                "stream": True,
            }
            state["finish"] = None
            self.server.handle_completions(body, on_chunk)
            if state["error"] is not None:
                raise RuntimeError(f"llama.cpp: {state['error']}")
            if state["stop"] or state["finish"] != "length" or len(ids) == before:
                break
            part += 1
        pieces.append(decoder.decode(b"", final=True))
        truncated = state["finish"] == "length" and len(ids) >= max_new_tokens
        return {"text": "".join(pieces), "truncated": truncated, "tokens": len(ids)}

    def stream(self, conversation, *, on_text, seed=0, temperature=0.0, max_new_tokens=256) -> Generation:
        """One rewrite, `on_text(piece)` called as each token's text comes (return True to stop)."""
        reply = self.request(
            self.render(conversation),
            seed=seed,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            stream=on_text,
        )
        return Generation([reply["text"]], [reply["truncated"]])

    def generate(self, conversations, *, n=1, seed=0, temperature=0.7, max_new_tokens=256, should_stop=None):
        jobs = [(c, i) for c in range(len(conversations)) for i in range(n)]
        prompts = []
        for conversation in conversations:
            try:
                prompts.append(self.render(conversation))
            except Exception as error:  # a template error sinks that conversation only
                prompts.append(error)

        def run(job):
            conversation, i = job
            if isinstance(prompts[conversation], Exception):
                return prompts[conversation]
            if should_stop is not None and should_stop():  # waiting for a slot when the stop came
                return GenerationStopped()
            try:
                return self.request(
                    prompts[conversation],
                    seed=seed + i,
                    temperature=temperature,
                    max_new_tokens=max_new_tokens,
                    reuse=len(jobs) > 1,  # decoded side by side anyway: batch composition already moves the bits
                    should_stop=should_stop,
                )
            except Exception as error:
                return error

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:  # llama.cpp's slots decode them together
            replies = dict(zip(jobs, pool.map(run, jobs), strict=True))
        results = []
        for c in range(len(conversations)):
            mine = [replies[(c, i)] for i in range(n)]
            failed = next((r for r in mine if isinstance(r, Exception)), None)
            results.append(failed or Generation([r["text"] for r in mine], [r["truncated"] for r in mine]))
        return results


def _compile_template(source: str):
    """The chat template as transformers compiles it (sandboxed jinja2, trim_blocks and lstrip_blocks)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(f"chat template: {message}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(source).render


def gguf_chat_template(gguf_path: str) -> dict:
    """The chat template and special tokens inference needs: from the export's sidecar (instant), else from the
    GGUF's own metadata (a couple of seconds: the reader maps the whole file)."""
    sidecar = f"{gguf_path}.enhancer.json"
    if os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as handle:
            values = json.load(handle)
        if "chat_template" in values:
            return values
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)

    def text(key):
        field = reader.fields.get(key)
        return bytes(field.parts[field.data[0]]).decode("utf-8") if field else None

    def token(key):
        field = reader.fields.get(key)
        if field is None:
            return None
        tokens = reader.fields["tokenizer.ggml.tokens"]
        return bytes(tokens.parts[tokens.data[int(field.parts[field.data[0]][0])]]).decode("utf-8")

    return {
        "chat_template": text("tokenizer.chat_template"),
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
    }
