"""enhancer: rewrite simple text-to-video prompts into detailed ones, and train the rewriter (SFT, then online
RL through pluggable video backends, reward scorers and policy trainers).

    from enhancer import Enhancer, enhance, run, hookimpl

Heavy imports (torch, transformers) happen only when a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enhancer.contracts import Enhancement, Sample, Video
from enhancer.hookspecs import hookimpl

if TYPE_CHECKING:
    from enhancer.enhance import Enhancer

__version__ = "0.1.0"
__all__ = ["Enhancer", "Enhancement", "Sample", "Video", "enhance", "hookimpl", "run"]

_default_enhancers: dict[tuple, Any] = {}


def __getattr__(name: str) -> Any:
    if name == "Enhancer":
        from enhancer.enhance import Enhancer

        return Enhancer
    raise AttributeError(f"module 'enhancer' has no attribute {name!r}")


def enhance(
    prompt,
    target: str = "generic",
    *,
    model: str = "embedded",
    adapter: str | None = None,
    engine: str = "transformers",
    **options,
):
    """Enhance with a model loaded once per (model, adapter, engine) and kept for later calls."""
    from enhancer.enhance import Enhancer

    key = (model, adapter, engine)
    if key not in _default_enhancers:
        _default_enhancers[key] = Enhancer.load(model=model, adapter=adapter, engine=engine)
    return _default_enhancers[key].enhance(prompt, target=target, **options)


def run(config=None, **overrides):
    """Run the two-stage recipe (see enhancer.train.orchestrator.run)."""
    from enhancer.train.orchestrator import run as run_recipe

    return run_recipe(config, **overrides)
