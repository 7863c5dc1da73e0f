"""The feature normalisation a model was trained with (:class:`FeatureTransform`), with torch alone.

It lives apart from :mod:`vqgraph.data.graph` so that serving (which applies it to new nodes)
imports no graph library. :func:`vqgraph.normalize_features` records the transform it applied
on the data it returns (``data.feature_transform``); ``fit_student`` hands it to its result, and
``result.predictor()`` serves raw features through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

FEATURE_NORMS = ("none", "row", "standard")


@dataclass(frozen=True, eq=False)
class FeatureTransform:
    """The feature normalisation a model was trained with, so that serving applies the same one.

    ``row`` divides each row by its sum of absolute values (per node: nothing is shared across
    nodes); ``standard`` centres and scales each column with ``mean`` and ``std`` [F] fitted on
    training-time nodes; ``none`` is the identity. Build it with :meth:`fit`. (Not a tuple: a
    tuple stored on a PyG ``Data`` of three nodes would pass for a node attribute.)
    """

    kind: str = "none"
    mean: Optional[Tensor] = None
    std: Optional[Tensor] = None

    @classmethod
    def fit(cls, x: Tensor, kind: str = "row", fit_idx: Optional[Tensor] = None) -> "FeatureTransform":
        """Fit ``kind`` on ``x`` [N, F] (column statistics from the rows ``fit_idx`` only, if given)."""
        if kind not in FEATURE_NORMS:
            raise ValueError(f"unknown feature normalisation {kind!r}; choose from {FEATURE_NORMS}")
        if kind != "standard":
            return cls(kind)
        ref = x if fit_idx is None else x[fit_idx]
        return cls(kind, ref.mean(0), ref.std(0).clamp_min(1e-12))

    def __call__(self, x: Tensor) -> Tensor:
        if self.kind == "none":
            return x
        if self.kind == "row":
            return x / x.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
        mean, std = self.mean, self.std
        if mean.device != x.device or mean.dtype != x.dtype:  # (an exported program then holds no device)
            mean, std = mean.to(x), std.to(x)
        return (x - mean) / std

    def __repr__(self) -> str:
        width = "" if self.mean is None else f", width={self.mean.numel()}"
        return f"FeatureTransform({self.kind!r}{width})"
