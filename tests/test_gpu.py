"""GPU paths, run only where CUDA is (`pytest -m gpu` on a GPU machine); skipped in the default CPU run."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_vllm_engine_enhances_with_the_embedded_model(embedded_dir):
    pytest.importorskip("vllm")
    from enhancer.enhance import Enhancer

    enhancer = Enhancer.load(model=str(embedded_dir), engine="vllm")
    rows = enhancer.enhance(["a fox trotting across a snowy field at dawn", "", "rain on a window"], n=2, seed=1)
    assert [r.status == "error" for r in rows] == [False, True, False]
    assert len(rows[0].variants) >= 1 and "fox" in rows[0].enhanced.lower()
    again = enhancer.enhance(["a fox trotting across a snowy field at dawn"], n=2, seed=1)
    assert again[0].variants == rows[0].variants  # seeded


def test_transformers_engine_on_cuda_in_bf16(embedded_dir):
    from enhancer.enhance import Enhancer

    enhancer = Enhancer.load(model=str(embedded_dir), device="cuda")
    assert next(enhancer.engine.model.parameters()).dtype == torch.bfloat16
    row = enhancer.enhance("a lighthouse in a storm", seed=0)
    assert row.status == "ok" and len(row.enhanced.split()) >= 20
