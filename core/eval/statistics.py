"""Bootstrap confidence intervals and paired win rates, over prompts (the unit that was sampled)."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def _bootstrap(values: list[float], seed: int, samples: int) -> tuple[float | None, float | None, float | None, int]:
    """Mean, and the 2.5th and 97.5th percentiles of the means of `samples` resamples (a 95% CI)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None, None, None, 0
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    return float(data.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)), int(data.size)


def bootstrap_mean(values: list[float | None], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Mean with a percentile bootstrap 95% CI; None values (could not score) are left out."""
    mean, low, high, n = _bootstrap([v for v in values if v is not None], seed, samples)
    return {"mean": mean, "low": low, "high": high, "n": n}


def paired_win_rate(
    a: list[float | None], b: list[float | None], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> dict:
    """Share of prompts where A scores above B (ties count half), over prompts both scored, with a 95% CI."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    wins = [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in pairs]
    rate, low, high, n = _bootstrap(wins, seed, samples)
    return {"rate": rate, "low": low, "high": high, "n": n}


def paired_difference(
    a: list[float | None], b: list[float | None], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> dict:
    """Mean of A - B over prompts both scored, with a 95% CI from resampling prompts: an interval that holds 0 is
    a difference within noise."""
    diffs = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    mean, low, high, n = _bootstrap(diffs, seed, samples)
    return {"mean": mean, "low": low, "high": high, "n": n}
