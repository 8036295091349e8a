"""Bootstrap confidence intervals and paired win rates, over prompts (the unit that was sampled)."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def bootstrap_mean(values: list[float], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Mean with a percentile bootstrap 95% CI."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    return {
        "mean": float(data.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "n": int(data.size),
    }


def paired_win_rate(
    a: list[float | None], b: list[float | None], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> dict:
    """Share of prompts where A scores above B (ties count half), over prompts both scored, with a 95% CI."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return {"rate": None, "low": None, "high": None, "n": 0}
    wins = np.asarray([1.0 if x > y else 0.5 if x == y else 0.0 for x, y in pairs])
    rng = np.random.default_rng(seed)
    rates = wins[rng.integers(0, wins.size, size=(samples, wins.size))].mean(axis=1)
    return {
        "rate": float(wins.mean()),
        "low": float(np.percentile(rates, 2.5)),
        "high": float(np.percentile(rates, 97.5)),
        "n": int(wins.size),
    }
