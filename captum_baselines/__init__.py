"""captum-baselines: baselines and baseline-aware attribution methods for Captum."""

from . import attr, baselines, datasets, metrics, models, visualization
from .attr import (
    AdaptiveIntegratedGradients,
    ExpectedGradients,
    LayerRSIGradCam,
    QuadratureIntegratedGradients,
    adaptive_integrated_gradients,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveIntegratedGradients",
    "ExpectedGradients",
    "LayerRSIGradCam",
    "QuadratureIntegratedGradients",
    "__version__",
    "adaptive_integrated_gradients",
    "attr",
    "baselines",
    "datasets",
    "metrics",
    "models",
    "visualization",
]
