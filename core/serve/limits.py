"""`enhancer serve`'s limits, in a module of their own so the command line can read them without loading the
server's web framework."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeLimits:
    """`enhancer serve`'s limits (the command's flags come from these fields)."""

    max_body_bytes: int = field(default=64_000, metadata={"help": "Largest request body; larger ones get 413."})
    max_n: int = field(default=8, metadata={"help": "Most variants one request may ask for."})
    max_image_bytes: int = field(
        default=4 << 20,
        metadata={"help": "Largest image a request may carry (with --vlm); the body limit grows by its base64 size."},
    )
    request_timeout_s: float = field(default=300.0, metadata={"help": "Seconds a request may wait for its rewrite."})
    batch_window_ms: float = field(
        default=20.0, metadata={"help": "How long the first request of a batch waits for others to join it."}
    )
    max_batch: int = field(default=32, metadata={"help": "Prompts per generate call."})
    # 64: two full batches at the default max_batch, or eight requests at the default max_n (issue 20's four n=8
    # requests fit, and a live one behind them no longer waits for clients that left)
    max_queue: int = field(
        default=64,
        metadata={
            "help": "Most rewrites waiting or being generated at once (a request for n variants counts n, streamed "
            "ones too); past it requests get 429 with Retry-After."
        },
    )

    def __post_init__(self):
        if (
            min(self.max_body_bytes, self.max_n, self.max_batch, self.max_queue, self.max_image_bytes) < 1
            or self.request_timeout_s < 1
        ):
            raise ValueError(
                "serve: max_body_bytes, max_n, max_batch and max_queue must be >= 1 and request_timeout_s >= 1"
            )
        if self.max_queue < self.max_n:
            raise ValueError(
                f"serve: max_queue ({self.max_queue}) is below max_n ({self.max_n}), so a request for max_n variants "
                "could never be queued: raise --max-queue or lower --max-n"
            )
        if self.batch_window_ms < 0:
            raise ValueError(f"serve: batch_window_ms must be >= 0, got {self.batch_window_ms}")
