"""Video backend "sora": any server that speaks the OpenAI videos protocol (create a job, poll it, download the
mp4), through the official `openai` SDK.

OpenAI shut its own hosted Sora API down on 2026-09-24, so `base_url` has no default: point it at a server that
speaks the same protocol, for example `enhancer video serve --backend diffusers ...` on a GPU machine, or a
provider that kept the protocol.

    enhancer video generate "a fox in the snow" --backend sora \\
        --option base_url=http://127.0.0.1:8100/v1 --option model=wan2.2 --out fox.mp4
    enhancer run --backend sora --backend-option base_url=http://gpu-1:8100/v1 ...

Options: base_url (or ENHANCER_SORA_BASE_URL), api_key (or ENHANCER_SORA_API_KEY / OPENAI_API_KEY), model,
cost_per_second (USD per second of video, for the budget; default 0.10, what sora-2 cost at 720p),
poll_interval_s, request_timeout_s. Retries, the cache and the budget are the core's (enhancer.video_service):
the SDK's own retries are off so that faults are counted once, and each job is created with an Idempotency-Key,
so a retried create returns the job already made instead of paying for a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import warnings
from pathlib import Path

from enhancer import Video, hookimpl
from enhancer.contracts import TransientVideoError, VideoJobFailed

# The SDK warns on every call that OpenAI's own endpoint is closing; this plugin exists for the other servers
# that speak the protocol, and refuses OpenAI's endpoint itself with an explanation (CLOSED_NOTE).
warnings.filterwarnings("ignore", message="The Sora API is scheduled", category=DeprecationWarning)

CLOSED_NOTE = (
    "OpenAI's hosted Sora API closed on 2026-09-24: set base_url to a server that speaks the OpenAI videos "
    "protocol (e.g. `enhancer video serve --backend diffusers --model ...` on a GPU machine), "
    "with --option base_url=URL or ENHANCER_SORA_BASE_URL"
)


def _retry_after(error) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the core's backoff decides


class SoraBackend:
    """The OpenAI videos protocol: create, poll, download."""

    name = "sora"

    def __init__(
        self,
        out_dir: str,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "sora-2",
        cost_per_second: float = 0.10,
        poll_interval_s: float = 2.0,
        request_timeout_s: float = 60.0,
    ):
        base_url = base_url or os.environ.get("ENHANCER_SORA_BASE_URL")
        if not base_url:
            raise ValueError(CLOSED_NOTE)
        if base_url.rstrip("/").startswith("https://api.openai.com"):
            raise ValueError(CLOSED_NOTE)
        self.out_dir = Path(out_dir)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.cost_per_second = float(cost_per_second)
        self.poll_interval_s = float(poll_interval_s)
        self._api_key = (
            api_key or os.environ.get("ENHANCER_SORA_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        )
        self._timeout = float(request_timeout_s)
        self._clients: dict = {}

    @property
    def client(self):
        """One SDK client per event loop: its connection pool belongs to the loop that made it, and each
        `VideoService.generate` call runs its own loop."""
        from openai import AsyncOpenAI

        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            self._clients = {
                loop: AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self._timeout)
            }
        return self._clients[loop]

    def cache_identity(self) -> dict:
        return {"backend": self.name, "base_url": self.base_url, "model": self.model}

    def estimate_cost(self, *, seconds: float, size: str) -> float:
        return round(self.cost_per_second * float(seconds), 6)

    async def _call(self, coroutine):
        """Run one SDK call, turning its errors into the core's: transient (retry) or failed (record)."""
        import openai

        try:
            return await coroutine
        except openai.RateLimitError as error:
            raise TransientVideoError(f"429 rate limited: {error}", _retry_after(error)) from error
        except openai.InternalServerError as error:
            raise TransientVideoError(f"server error {error.status_code}: {error}", _retry_after(error)) from error
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            raise TransientVideoError(f"{type(error).__name__}: {error}") from error
        except openai.APIStatusError as error:
            if error.status_code in (408, 409, 425):
                raise TransientVideoError(f"{error.status_code}: {error}", _retry_after(error)) from error
            raise VideoJobFailed(f"the server refused the request ({error.status_code}): {error}") from error

    async def submit(self, prompt, *, idempotency_key, seed, seconds, size, negative_prompt=None) -> str:
        extra = {"seed": seed, **({"negative_prompt": negative_prompt} if negative_prompt else {})}
        job = await self._call(
            self.client.videos.create(
                prompt=prompt,
                model=self.model,
                seconds=str(int(seconds)) if float(seconds).is_integer() else str(seconds),
                size=size,
                extra_headers={"Idempotency-Key": idempotency_key},
                extra_body=extra,
            )
        )
        return job.id  # even a job that failed at once exists (and may be billed): fetch reports the failure

    async def fetch(self, job_id, *, seed, seconds, size, negative_prompt=None) -> Video:
        started = time.perf_counter()
        while True:
            job = await self._call(self.client.videos.retrieve(job_id))
            if job.status == "completed":
                break
            if job.status == "failed":
                raise VideoJobFailed(_job_error(job))
            await asyncio.sleep(self.poll_interval_s)
        content = await self._call(self.client.videos.download_content(job_id, variant="video"))
        data = content.content
        if not data:
            raise TransientVideoError(f"video {job_id}: empty download")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"sora-{job_id}.mp4"
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        return Video(
            str(path),
            self.name,
            job.model or self.model,
            float(seconds),
            time.perf_counter() - started,
            self.estimate_cost(seconds=seconds, size=size),
            seed,
        )

    async def generate(self, prompt, *, seed, seconds, size, negative_prompt=None) -> Video:
        key = hashlib.sha256(repr((self.model, prompt, seed, seconds, size, negative_prompt)).encode()).hexdigest()
        job_id = await self.submit(
            prompt, idempotency_key=key, seed=seed, seconds=seconds, size=size, negative_prompt=negative_prompt
        )
        return await self.fetch(job_id, seed=seed, seconds=seconds, size=size, negative_prompt=negative_prompt)


def _job_error(job) -> str:
    error = getattr(job, "error", None)
    message = getattr(error, "message", None) or (error.get("message") if isinstance(error, dict) else None)
    code = getattr(error, "code", None) or (error.get("code") if isinstance(error, dict) else None)
    return f"video {job.id} failed" + (f" ({code})" if code else "") + (f": {message}" if message else "")


@hookimpl
def enhancer_video_backends():
    return {"sora": SoraBackend}
