"""What ``captum-baselines demo`` and ``compare`` do, as a library.

- :mod:`.methods`: the registry of the methods compared (a decorator next to each
  builder fills it).
- :mod:`.problems`: the settings, a :class:`~.problems.Problem` (model, images,
  targets, valid range, reference data, layer) and the demo's variants as data.
- :mod:`.loading`: the user's model, images, normalization, targets and layer.
- :mod:`.runner`: builds the methods, runs the comparison, estimates the work;
  the ``demo`` and ``compare`` pipelines.
- :mod:`.report`: the reading of a comparison (flags, variant readings) and the
  Markdown / CSV / JSON report.
- :mod:`.figures`: the figures written next to the report.

Importing this package (or :mod:`.methods` and :mod:`.problems`) imports neither
torch nor matplotlib, so that ``captum-baselines --help`` answers at once.
"""

from .errors import OptionError

__all__ = ["OptionError"]
