"""Attribution methods of captum-baselines, all following Captum's conventions."""

from .integrated_gradients import (
    AdaptiveIntegratedGradients,
    AdaptiveResult,
    QuadratureIntegratedGradients,
    adaptive_integrated_gradients,
    quadrature,
)
from .layer_rsi_grad_cam import LayerRSIGradCam

__all__ = [
    "AdaptiveIntegratedGradients",
    "AdaptiveResult",
    "LayerRSIGradCam",
    "QuadratureIntegratedGradients",
    "adaptive_integrated_gradients",
    "quadrature",
]
