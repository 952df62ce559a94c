"""Attribution methods of captum-baselines, all following Captum's conventions."""

from .adaptive_ig import (
    AdaptiveIntegratedGradients,
    AdaptiveResult,
    adaptive_integrated_gradients,
)
from .blur_ig import BlurIntegratedGradients
from .expected_gradients import (
    ExpectedGradients,
    expected_gradients_and_smoothgrad,
    standard_error,
)
from .guided_ig import GuidedIntegratedGradients
from .integrated_gradients import QuadratureIntegratedGradients, quadrature
from .layer_rsi_grad_cam import LayerRSIGradCam
from .patterns import Patterns, fit_patterns
from .pgig import PatternAttribution, PatternGuidedIntegratedGradients

__all__ = [
    "AdaptiveIntegratedGradients",
    "AdaptiveResult",
    "BlurIntegratedGradients",
    "ExpectedGradients",
    "GuidedIntegratedGradients",
    "LayerRSIGradCam",
    "PatternAttribution",
    "PatternGuidedIntegratedGradients",
    "Patterns",
    "QuadratureIntegratedGradients",
    "adaptive_integrated_gradients",
    "expected_gradients_and_smoothgrad",
    "fit_patterns",
    "quadrature",
    "standard_error",
]
