"""Evaluating attributions: removal curves, their areas, and sanity checks."""

from .ablation import (
    ablation_curve,
    area_under_curve,
    center_of_mass,
    mass_center_boxes,
    random_attributions,
)
from .compare import (
    CURVES,
    ComparisonResult,
    MethodResult,
    compare_attributions,
)
from .degradation import degradation_curve
from .sanity import (
    RandomizationResult,
    randomization_check,
    randomize_parameters,
    spearman,
    spearman_nz,
)

__all__ = [
    "CURVES",
    "ComparisonResult",
    "MethodResult",
    "RandomizationResult",
    "ablation_curve",
    "area_under_curve",
    "center_of_mass",
    "compare_attributions",
    "degradation_curve",
    "mass_center_boxes",
    "random_attributions",
    "randomization_check",
    "randomize_parameters",
    "spearman",
    "spearman_nz",
]
