"""Tests of attribution maps and figures: what was drawn, not only that it ran."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from captum.attr import IntegratedGradients  # noqa: E402
from torch import nn  # noqa: E402

from captum_baselines.metrics.compare import compare_attributions  # noqa: E402
from captum_baselines.visualization import (  # noqa: E402
    attribution_map,
    cumulative_attribution,
    plot_attributions,
    plot_baselines,
    plot_comparison,
    plot_completeness,
    plot_curves,
    plot_path_outputs,
)
from tests.helpers import model_unchanged, small_cnn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def linear_model(n_in: int = 2 * 3 * 3) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 2)).double()
    return model


def quadratic_model() -> nn.Module:
    class Quadratic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = (x**2).flatten(1).sum(1)
            return torch.stack([s, -s], 1)

    return Quadratic()


def test_attribution_map_distill_convention_by_hand():
    a = torch.zeros(1, 2, 2, 3, dtype=torch.float64)
    a[0, 0] = torch.tensor([[1.0, -2.0, 3.0], [0.0, 4.0, -8.0]])
    a[0, 1] = torch.tensor([[-1.0, 1.0, 0.0], [0.5, 0.0, 2.0]])
    channel_abs = np.array([[2.0, 3.0, 3.0], [0.5, 4.0, 10.0]])
    cap = np.percentile(channel_abs, 80.0)
    expected = np.clip(channel_abs / cap, 0, 1)
    np.testing.assert_allclose(attribution_map(a, clip_percentile=80.0)[0], expected)
    np.testing.assert_allclose(
        attribution_map(a, clip_percentile=100.0)[0], channel_abs / 10.0
    )
    signed = np.array([[0.0, -1.0, 3.0], [0.5, 4.0, -6.0]])
    cap = np.percentile(np.abs(signed), 80.0)
    np.testing.assert_allclose(
        attribution_map(a, "signed", 80.0)[0], np.clip(signed / cap, -1, 1)
    )
    assert attribution_map(a, "signed").min() < 0 <= attribution_map(a).min()
    # one map per example, (N, H, W) inputs taken as already summed, zeros stay 0
    maps = attribution_map(np.stack([channel_abs, np.zeros((2, 3))]))
    assert maps.shape == (2, 2, 3) and not maps[1].any()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(2, 3),), "attributions"),
        ((torch.zeros(1, 2, 2), "both"), "sign"),
        ((torch.zeros(1, 2, 2), "absolute", 0.0), "clip_percentile"),
        ((torch.full((1, 2, 2), float("nan")),), "NaN"),
    ],
)
def test_attribution_map_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        attribution_map(*args)


def test_plot_attributions_draws_the_maps():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 5, 7, generator=g)
    maps = {"IG": torch.randn(2, 3, 5, 7, generator=g), "CAM": torch.rand(2, 1, 5, 7)}
    fig = plot_attributions(images, maps, image_titles=["cat", "dog"])
    assert isinstance(fig, matplotlib.figure.Figure)
    panels, colorbar = fig.axes[:6], fig.axes[6:]
    # Column titles once, on the first row; row labels left of the inputs.
    assert [ax.get_title() for ax in panels] == ["input", "IG", "CAM", "", "", ""]
    assert [panels[0].get_ylabel(), panels[3].get_ylabel()] == ["cat", "dog"]
    (bar,) = colorbar
    assert "99th percentile" in bar.get_ylabel()
    for row in range(2):
        drawn_image = fig.axes[3 * row].get_images()[0]
        assert drawn_image.get_extent() == [-0.5, 6.5, 4.5, -0.5]
        np.testing.assert_allclose(
            drawn_image.get_array().max(), 1.0
        )  # min-max scaled RGB
        ig_image = fig.axes[3 * row + 1].get_images()[0]
        np.testing.assert_allclose(
            ig_image.get_array(), attribution_map(maps["IG"])[row]
        )
        assert ig_image.get_clim() == (0.0, 1.0)
        cam_image = fig.axes[3 * row + 2].get_images()[0]
        np.testing.assert_allclose(
            cam_image.get_array(), attribution_map(maps["CAM"])[row]
        )
    signed = plot_attributions(images[:1], maps["IG"][:1], sign="signed")
    image = signed.axes[1].get_images()[0]
    assert image.get_clim() == (-1.0, 1.0) and image.get_cmap().name == "bwr"
    assert "of |attribution|" in signed.axes[-1].get_ylabel()  # its own colorbar
    with pytest.raises(ValueError, match="CAM"):
        plot_attributions(images, {"CAM": torch.rand(2, 1, 4, 4)})


def test_plot_attributions_outlines_the_input():
    # A bright square on black: its mid-gray contour is the square's border.
    image = torch.zeros(1, 1, 8, 8)
    image[..., 2:6, 2:6] = 1.0
    fig = plot_attributions(image, {"a": torch.rand(1, 1, 8, 8)}, outline=True)
    (contour,) = [c for c in fig.axes[1].collections]
    (path,) = contour.get_paths()
    vertices = path.vertices
    assert vertices[:, 0].min() == pytest.approx(1.5) and vertices[:, 0].max() == (
        pytest.approx(5.5)
    )
    assert not plot_attributions(image, {"a": image}).axes[1].collections


def test_plot_baselines_shares_the_input_range():
    image = torch.rand(1, 1, 4, 4) * 0.5 + 0.25
    fig = plot_baselines(
        image, {"black": torch.zeros(1, 4, 4), "white": torch.ones(1, 4, 4)}
    )
    assert [ax.get_title() for ax in fig.axes] == ["input", "black", "white"]
    arrays = [ax.get_images()[0].get_array() for ax in fig.axes]
    np.testing.assert_allclose(arrays[0], image[0, 0].numpy(), atol=1e-7)
    assert not arrays[1].any() and np.all(arrays[2] == 1.0)
    for ax in fig.axes:  # framed: a white baseline stays visible on white paper
        assert all(spine.get_visible() for spine in ax.spines.values())
    rgb = plot_baselines(torch.rand(3, 4, 4), {"blurred": torch.rand(3, 4, 4)})
    assert rgb.axes[1].get_images()[0].get_array().shape == (4, 4, 3)
    with pytest.raises(ValueError, match="blurred"):
        plot_baselines(torch.rand(3, 4, 4), {"blurred": torch.rand(3, 2, 4)})


def test_plot_path_outputs_draws_f_along_the_path():
    model = linear_model()
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    with model_unchanged(model):
        fig = plot_path_outputs(model, x, 0.0, target=1, n_steps=5, labels=["a", "b"])
    ax = fig.axes[0]
    assert ax.get_title() == "model output along the path"
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    alphas = np.linspace(0, 1, 5)
    np.testing.assert_allclose(lines[0].get_xdata(), alphas)
    w, b = model[1].weight[1].detach(), model[1].bias[1].item()
    for i, line in enumerate(lines):
        expected = b + alphas * float((w * x[i].flatten()).sum())
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)
    probability = plot_path_outputs(model, x, x, target=1, score="probability")
    assert probability.axes[0].get_ylabel() == "probability"
    ydata = probability.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(ydata, ydata[0])  # baseline == input: flat


def test_cumulative_attribution_uses_the_quadrature_weights():
    # Quadratic f = sum x^2 with baseline 0: the IG integrand at alpha is
    # 2 alpha |x|^2, so the cumulative sum follows the weights exactly.
    model = quadratic_model()
    x = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    norm = (x**2).flatten(1).sum(1)
    alphas, cumulative, gap = cumulative_attribution(model, x, 0 * x, 0, n_steps=6)
    torch.testing.assert_close(gap, norm)
    torch.testing.assert_close(cumulative[:, -1], norm)  # Gauss-Legendre is exact
    ig = IntegratedGradients(model).attribute(x, target=0, n_steps=6)
    torch.testing.assert_close(cumulative[:, -1], ig.flatten(1).sum(1))
    assert bool((alphas[1:] > alphas[:-1]).all())
    # the package's trapezoid weights sum to 1 (Captum's to (n - 1) / n)
    model_linear = linear_model()
    xl = torch.rand(1, 2, 3, 3, dtype=torch.float64)
    _, trapezoid, gap = cumulative_attribution(
        model_linear, xl, 0 * xl, 0, n_steps=10, method="riemann_trapezoid"
    )
    torch.testing.assert_close(trapezoid[:, -1], gap)


def test_plot_completeness_draws_both_sides():
    model = quadratic_model()
    x = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    with model_unchanged(nn.Sequential(model)):
        fig = plot_completeness(model, x, 0.0, target=0, n_steps=8)
    assert len(fig.axes) == 2
    norm = (x**2).flatten(1).sum(1)
    for i, ax in enumerate(fig.axes):
        path, cumulative, target_line = ax.get_lines()
        assert path.get_label() == "f(path) - f(x')"
        assert cumulative.get_label() == "cumulative attribution"
        assert target_line.get_label() == "f(x) - f(x')"
        np.testing.assert_allclose(
            path.get_ydata(), np.linspace(0, 1, 101) ** 2 * norm[i].item(), atol=1e-12
        )
        np.testing.assert_allclose(cumulative.get_ydata()[-1], norm[i].item())
        np.testing.assert_allclose(target_line.get_ydata(), [norm[i].item()] * 2)
        assert ax.get_title().startswith(f"example {i} (delta")


def test_plot_curves_draws_means_with_the_control_dashed():
    curves = {
        "IG": torch.tensor([[1.0, 0.4, 0.2], [1.0, 0.6, 0.0]]),
        "random": torch.tensor([1.0, 0.9, 0.8]),
    }
    fig = plot_curves(curves, title="top k")
    ax = fig.axes[0]
    assert ax.get_title() == "top k"
    ig, random = ax.get_lines()
    np.testing.assert_allclose(ig.get_ydata(), [1.0, 0.5, 0.1])
    np.testing.assert_allclose(ig.get_xdata(), [0.0, 0.5, 1.0])
    assert ig.get_label() == "IG (AUC 0.525)"
    assert random.get_label() == "random (AUC 0.900)"
    assert random.get_linestyle() == "--" and ig.get_linestyle() == "-"
    assert not ax.collections  # no bands by default
    banded = plot_curves(curves, band=True).axes[0]
    assert len(banded.collections) == 1  # one band, none for a single curve
    fig = plot_curves(curves, x=[0.0, 0.1, 1.0])
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.1, 1.0])
    assert line.get_label() == "IG (AUC 0.345)"  # 0.1 * 0.75 + 0.9 * 0.3
    with pytest.raises(ValueError, match="`x`"):
        plot_curves(curves, x=[0.0, 1.0])


def test_plot_comparison():
    model = small_cnn().double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    result = compare_attributions(
        model,
        x,
        1,
        {"input": lambda xs, t: xs},
        curves=("top_k", "degradation"),
        patch_size=4,
        show_progress=False,
    )
    fig = plot_comparison(result, "degradation")
    ax = fig.axes[0]
    assert ax.get_title() == "Degradation\n(lower AUC is better)"
    assert ax.get_xlabel() == "fraction of patches replaced (most relevant first)"
    assert ax.get_ylabel() == "class probability, relative to the intact input"
    lines = ax.get_lines()
    assert [line.get_label().split(" (")[0] for line in lines] == ["input", "random"]
    np.testing.assert_allclose(
        lines[0].get_ydata(),
        result.methods["input"].curves["degradation"].mean(0).numpy(),
    )
    np.testing.assert_allclose(lines[0].get_xdata(), [0.0, 0.25, 0.5, 0.75, 1.0])
