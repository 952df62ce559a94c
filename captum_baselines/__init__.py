"""captum-baselines: baselines and baseline-aware attribution methods for Captum."""

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

__version__ = "0.1.0"

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
    "fit_patterns",
    "baselines",
    "datasets",
    "metrics",
    "models",
    "visualization",
]
