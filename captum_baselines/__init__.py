"""captum-baselines: baselines and baseline-aware attribution methods for Captum.

The submodules and names below are imported on first use (PEP 562), so that
``import captum_baselines`` and the command line's ``--help`` are instant and
import neither torch nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBMODULES = (
    "attr",
    "baselines",
    "datasets",
    "metrics",
    "models",
    "visualization",
)
_FROM_ATTR = (
    "AdaptiveIntegratedGradients",
    "ExpectedGradients",
    "LayerRSIGradCam",
    "PatternAttribution",
    "PatternGuidedIntegratedGradients",
    "Patterns",
    "QuadratureIntegratedGradients",
    "adaptive_integrated_gradients",
    "fit_patterns",
)

if TYPE_CHECKING:
    from . import attr, baselines, datasets, metrics, models, visualization
    from .attr import (
        AdaptiveIntegratedGradients,
        ExpectedGradients,
        LayerRSIGradCam,
        PatternAttribution,
        PatternGuidedIntegratedGradients,
        Patterns,
        QuadratureIntegratedGradients,
        adaptive_integrated_gradients,
        fit_patterns,
    )


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FROM_ATTR:
        value = getattr(importlib.import_module(".attr", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AdaptiveIntegratedGradients",
    "ExpectedGradients",
    "LayerRSIGradCam",
    "PatternAttribution",
    "PatternGuidedIntegratedGradients",
    "Patterns",
    "QuadratureIntegratedGradients",
    "__version__",
    "adaptive_integrated_gradients",
    "attr",
    "baselines",
    "datasets",
    "fit_patterns",
    "metrics",
    "models",
    "visualization",
]
