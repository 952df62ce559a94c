"""Attribution methods of captum-baselines, all following Captum's conventions."""

from .integrated_gradients import (
    AdaptiveIntegratedGradients,
    AdaptiveResult,
    QuadratureIntegratedGradients,
    adaptive_integrated_gradients,
    quadrature,
)

__all__ = [
    "AdaptiveIntegratedGradients",
    "AdaptiveResult",
    "QuadratureIntegratedGradients",
    "adaptive_integrated_gradients",
    "quadrature",
]
