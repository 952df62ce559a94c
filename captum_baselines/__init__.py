"""captum-baselines: baselines and baseline-aware attribution methods for Captum."""

from . import baselines

__version__ = "0.1.0"

__all__ = ["baselines", "__version__"]
