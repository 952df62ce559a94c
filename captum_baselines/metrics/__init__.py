"""Evaluating attributions: removal curves (including ROAD), their areas with
bootstrap intervals, sanity checks, and a bridge to Quantus."""

from .ablation import (
    ablation_curve,
    area_under_curve,
    area_under_curve_interval,
    center_of_mass,
    mass_center_boxes,
    random_attributions,
)
from .compare import (
    CURVES,
    DEFAULT_CURVES,
    HIGHER_IS_BETTER,
    ROAD_GAP,
    ComparisonResult,
    MethodResult,
    compare_attributions,
)
from .degradation import degradation_curve
from .imputation import noisy_linear_imputation
from .intervals import Interval, bootstrap_interval, tiers
from .quantus import quantus_explain_func
from .road import RoadResult, road_curves
from .sanity import (
    LABELS,
    RandomizationResult,
    randomization_check,
    randomize_parameters,
    spearman,
    spearman_nz,
)

__all__ = [
    "CURVES",
    "DEFAULT_CURVES",
    "HIGHER_IS_BETTER",
    "LABELS",
    "ROAD_GAP",
    "ComparisonResult",
    "Interval",
    "MethodResult",
    "RandomizationResult",
    "RoadResult",
    "ablation_curve",
    "area_under_curve",
    "area_under_curve_interval",
    "bootstrap_interval",
    "center_of_mass",
    "compare_attributions",
    "degradation_curve",
    "mass_center_boxes",
    "noisy_linear_imputation",
    "quantus_explain_func",
    "random_attributions",
    "randomization_check",
    "randomize_parameters",
    "road_curves",
    "spearman",
    "spearman_nz",
    "tiers",
]
