"""Attribution methods of captum-baselines, all following Captum's conventions."""

from .expected_gradients import (
    ExpectedGradients,
    expected_gradients_and_smoothgrad,
    standard_error,
)
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
    "ExpectedGradients",
    "LayerRSIGradCam",
    "QuadratureIntegratedGradients",
    "adaptive_integrated_gradients",
    "expected_gradients_and_smoothgrad",
    "quadrature",
    "standard_error",
]
