"""Every figure function, rendered and read back from the figure object: legends
outside the data, lines told apart by color and style, sizes fit for a paper."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from torch import nn  # noqa: E402

from captum_baselines.metrics.compare import compare_attributions  # noqa: E402
from captum_baselines.study.methods import METHODS  # noqa: E402
from captum_baselines.visualization import (  # noqa: E402
    line_styles,
    plot_attributions,
    plot_baselines,
    plot_comparison,
    plot_completeness,
    plot_curves,
    plot_intervals,
    plot_path_outputs,
)
from tests.helpers import small_cnn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")

#: The demo's eleven lines: ten methods and the random control.
NAMES = [
    "IG black",
    "IG white",
    "IG max distance",
    "IG blur",
    "IG uniform",
    "IG gaussian",
    "IG training data",
    "EG training data",
    "PGIG black",
    "RSI-Grad-CAM uniform output",
    "random",
]
#: Every registered method of the demo and the random control (17 lines).
MANY = [spec.label for spec in METHODS.values()] + ["random"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()


def _curves(names: list[str] = NAMES) -> Figure:
    g = torch.Generator().manual_seed(0)
    return plot_curves(
        {name: torch.rand(5, 11, generator=g).double() for name in names},
        title="Top-k ablation",
    )


def _road_result(names: list[str] = MANY):
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    methods = {
        name: (lambda xs, t, s=i: xs * (s + 1) - 0.5 * s)
        for i, name in enumerate(names[:-1])
    }
    return compare_attributions(
        small_cnn().double(),
        x,
        1,
        methods,
        curves=("top_k", "road_morf", "road_lerf"),
        generator=torch.Generator().manual_seed(0),
        show_progress=False,
    )


def _intervals() -> Figure:
    return plot_intervals(_road_result())


def _comparison() -> Figure:
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    methods = {name: (lambda xs, t: xs) for name in NAMES[:-1]}
    result = compare_attributions(
        small_cnn().double(),
        x,
        1,
        methods,
        curves=("top_k",),
        generator=torch.Generator().manual_seed(0),
        show_progress=False,
    )
    return plot_comparison(result, "top_k")


def _attributions() -> Figure:
    images = torch.rand(3, 1, 6, 6)
    maps = {name: torch.randn(3, 1, 6, 6) for name in NAMES}
    return plot_attributions(images, maps, image_titles=["a", "b", "c"], outline=True)


def _baselines() -> Figure:
    image = torch.rand(1, 6, 6)
    return plot_baselines(image, {"black": 0 * image, "white": 0 * image + 1})


def _path() -> Figure:
    x = torch.rand(12, 1, 4, 4, dtype=torch.float64)
    return plot_path_outputs(_linear(), x, 0.0, target=0, n_steps=5)


def _completeness() -> Figure:
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    return plot_completeness(_linear(), x, 0.0, target=0, n_steps=4)


FIGURES: dict[str, Callable[[], Figure]] = {
    "plot_curves": _curves,
    "plot_comparison": _comparison,
    "plot_comparison (every method)": lambda: plot_comparison(
        _road_result(), "road_lerf"
    ),
    "plot_curves (every method)": lambda: _curves(MANY),
    "plot_intervals": _intervals,
    "plot_attributions": _attributions,
    "plot_baselines": _baselines,
    "plot_path_outputs": _path,
    "plot_completeness": _completeness,
}


def _legends(fig: Figure) -> list:
    legends = list(fig.legends)
    legends += [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return legends


@pytest.mark.parametrize("name", FIGURES)
def test_legends_stay_outside_every_axes(name):
    fig = FIGURES[name]()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for legend in _legends(fig):
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            overlap = Bbox.intersection(box, ax.get_window_extent(renderer))
            area = 0.0 if overlap is None else overlap.width * overlap.height
            assert area < 1.0, f"{name}: legend over the axes {ax.get_title()!r}"
            if ax.get_title():
                title = Bbox.intersection(box, ax.title.get_window_extent(renderer))
                assert title is None or title.width * title.height < 1.0, (
                    f"{name}: legend over the title {ax.get_title()!r}"
                )
        # and inside the figure, so that it is saved
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)


@pytest.mark.parametrize("name", FIGURES)
def test_no_two_lines_share_color_and_style(name):
    fig = FIGURES[name]()
    for ax in fig.axes:
        lines = [
            line for line in ax.get_lines() if not line.get_label().startswith("_")
        ]
        looks = [
            (to_rgb(line.get_color()), line.get_linestyle(), line.get_marker())
            for line in lines
        ]
        assert len(set(looks)) == len(looks), f"{name}: {looks}"


@pytest.mark.parametrize("name", FIGURES)
def test_sized_for_a_paper(name):
    fig = FIGURES[name]()
    width, _ = fig.get_size_inches()
    # Curves and small multiples fit a page's text width; grids of panels scale
    # with the number of methods (1.2 in per panel) and are shrunk to fit.
    if name not in ("plot_attributions", "plot_baselines"):
        assert width <= 7.5
    fig.canvas.draw()
    sizes = [
        t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()
    ]
    assert min(sizes) >= 6 and max(sizes) <= 10


def test_curve_lines_are_distinct_and_the_control_is_black():
    ax = _curves().axes[0]
    lines = {line.get_label().split(" (AUC")[0]: line for line in ax.get_lines()}
    assert list(lines) == NAMES
    control = lines.pop("random")
    assert to_rgb(control.get_color()) == (0.0, 0.0, 0.0)
    assert control.get_linestyle() == "--"
    for name, line in lines.items():
        r, g, b = to_rgb(line.get_color())
        assert not r == g == b, f"{name} is gray or black, like the control"
    # Intervals belong in the table: no shaded band per method.
    assert not ax.collections
    assert ax.get_title() == "Top-k ablation"


def test_line_styles_are_unique_far_beyond_the_demo():
    styles = line_styles(80)
    looks = [(s["color"], s["linestyle"], s.get("marker")) for s in styles]
    assert len(set(looks)) == 80
    # neighbours differ in both color and style
    for a, b in zip(styles, styles[1:]):
        assert a["color"] != b["color"] and a["linestyle"] != b["linestyle"]


def test_intervals_draw_every_cell_of_the_table():
    result = _road_result(NAMES)
    fig = plot_intervals(result)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[-1] for ax in panels] == [
        "(lower is better)",
        "(lower is better)",
        "(higher is better)",
        "(higher is better)",  # the ROAD gap
    ]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == NAMES
    for ax, summary in zip(panels, result.summary_names):
        bars = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
        assert len(bars) == len(NAMES)
        # the first method on top: its bar on the highest row
        first = result.interval(NAMES[0], summary)
        top = max(bars, key=lambda line: line.get_ydata()[0])
        assert list(top.get_xdata()) == [first.low, first.high]


def test_curve_titles_say_which_way_is_better():
    result = _road_result(NAMES)
    assert plot_comparison(result, "road_lerf").axes[0].get_title() == (
        "ROAD LeRF (least relevant first)\n(higher AUC is better)"
    )
    assert (
        plot_comparison(result, "road_morf")
        .axes[0]
        .get_title()
        .endswith("(lower AUC is better)")
    )


def test_every_registered_method_gets_its_own_color():
    assert len(MANY) >= 17
    ax = _curves(MANY).axes[0]
    colors = [to_rgb(line.get_color()) for line in ax.get_lines()]
    assert len(set(colors)) == len(MANY)
    # and in the small multiples, where the color alone tells the rows apart
    ax = plot_intervals(_road_result(MANY)).axes[0]
    dots = [line for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert len({to_rgb(line.get_color()) for line in dots}) == len(MANY)


def test_study_figures_are_written_at_print_resolution(tmp_path):
    from PIL import Image

    from captum_baselines.study.figures import DPI, write_figures
    from captum_baselines.study.problems import Problem, Settings
    from captum_baselines.study.runner import Outcome

    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    model = small_cnn().double()
    result = compare_attributions(
        model, x, 1, {"input": lambda xs, t: xs}, patch_size=4, show_progress=False
    )
    problem = Problem(model, x, torch.ones(2), (0.0, 1.0), x, None, "t", "d")
    written = write_figures(Outcome(problem, result, {}, 0.0), Settings(), tmp_path)
    assert [p.name for p in written] == [
        "baselines.png",
        "attributions.png",
        "curves_top_k.png",
        "curves_mass_center.png",
        "curves_degradation.png",
        "intervals.png",
    ]
    with Image.open(tmp_path / "curves_top_k.png") as png:
        assert png.size[0] >= 6 * DPI  # 6 in at 200 dpi, not a 550 px thumbnail


def test_many_methods_split_the_attribution_maps_into_page_wide_figures(tmp_path):
    from captum_baselines.study.figures import (
        attribution_figure_names,
        method_groups,
        write_figures,
    )
    from captum_baselines.study.problems import Problem, Settings
    from captum_baselines.study.runner import Outcome

    assert [len(g) for g in method_groups(NAMES)] == [6, 5]
    assert [len(g) for g in method_groups(MANY)] == [6, 6, 5]
    assert sum(method_groups(MANY), []) == MANY
    assert method_groups(["a"]) == [["a"]]
    assert attribution_figure_names(16) == [
        "attributions.png",
        "attributions_2.png",
        "attributions_3.png",
    ]
    result = _road_result()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    problem = Problem(small_cnn(), x, torch.ones(3), (0.0, 1.0), x, None, "t", "d")
    written = write_figures(Outcome(problem, result, {}, 0.0), Settings(), tmp_path)
    names = [p.name for p in written]
    assert names[1:4] == attribution_figure_names(16)
    assert names[-1] == "intervals.png"
    from PIL import Image

    for name in names:
        with Image.open(tmp_path / name) as png:
            width = png.size[0] / 200
        assert width <= 7.5, (name, width)
