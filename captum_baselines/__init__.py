"""captum-baselines: baselines and baseline-aware attribution methods for Captum.

Submodules and public names are imported when first used (PEP 562), so that
``import captum_baselines`` is instant and loads neither torch nor matplotlib
(which Captum itself imports); ``captum_baselines.ExpectedGradients`` or
``from captum_baselines import ExpectedGradients`` loads what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_SUBMODULES = (
    "attr",
    "baselines",
    "datasets",
    "metrics",
    "models",
    "references",
    "visualization",
)

#: Public name -> the submodule that defines it.
_NAMES = {
    "AdaptiveIntegratedGradients": "attr",
    "BlurIntegratedGradients": "attr",
    "ExpectedGradients": "attr",
    "GuidedIntegratedGradients": "attr",
    "LayerRSIGradCam": "attr",
    "PatternAttribution": "attr",
    "PatternGuidedIntegratedGradients": "attr",
    "Patterns": "attr",
    "QuadratureIntegratedGradients": "attr",
    "adaptive_integrated_gradients": "attr",
    "fit_patterns": "attr",
}

if TYPE_CHECKING:
    from . import (
        attr,
        baselines,
        datasets,
        metrics,
        models,
        references,
        visualization,
    )
    from .attr import (
        AdaptiveIntegratedGradients,
        BlurIntegratedGradients,
        ExpectedGradients,
        GuidedIntegratedGradients,
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
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES, *_NAMES])


__all__ = [
    "AdaptiveIntegratedGradients",
    "BlurIntegratedGradients",
    "ExpectedGradients",
    "GuidedIntegratedGradients",
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
    "references",
    "visualization",
]
