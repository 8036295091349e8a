"""Inference: the `Enhancer` and its engines."""

from enhancer.enhance.enhancer import Enhancer

__all__ = ["Enhancer"]
