"""Tests of the pattern statistics, estimators, folding and the Patterns map."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_baselines.attr.pattern_graph import RELU, LayerRole, trace_layer_roles
from captum_baselines.attr.pattern_layers import effective_weight
from captum_baselines.attr.patterns import (
    Patterns,
    accumulate_statistics,
    fit_patterns,
    layer_statistics,
)
from tests.helpers import (
    FailingForward,
    model_unchanged,
    randomize_batchnorms,
    small_cnn,
    stress_test_model,
)

torch.set_flush_denormal(True)


# ---------------------------------------------------------------- statistics


def _unfold_statistics(conv: nn.Conv2d, x: torch.Tensor, positive: bool):
    """The conv statistics from explicit patches (the oracle)."""
    y = conv(x)
    n, j = y.shape[:2]
    g = conv.groups
    patches = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    patches = patches.reshape(n, g, -1, patches.shape[-1])  # (N, g, C/g*k*k, L)
    unit_patches = patches.repeat_interleave(j // g, dim=1)  # (N, J, C/g*k*k, L)
    y = y.reshape(n, j, -1)
    regime = (y > 0).double() if positive else torch.ones_like(y)
    sum_x = torch.einsum("njl,njil->ji", regime, unit_patches)
    sum_xy = torch.einsum("njl,njil->ji", regime * y, unit_patches)
    shape = conv.weight.shape
    return {
        "count": torch.tensor(float(n * y.shape[-1]), dtype=torch.float64),
        "count_regime": regime.sum((0, 2)),
        "sum_output": y.sum((0, 2)),
        "sum_output_regime": (regime * y).sum((0, 2)),
        "sum_input": sum_x.reshape(shape),
        "sum_input_output": sum_xy.reshape(shape),
    }


def _uncentered(stats):
    """The statistics with the outputs not centered, as the oracles sum them."""
    return stats.recentered(torch.zeros_like(stats.center))


@settings(max_examples=8, deadline=None)
@given(
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 4]),  # 4: depthwise, two outputs per channel
    positive=st.booleans(),
)
def test_conv_statistics_equal_unfold_oracle(
    stride, padding, dilation, groups, positive
):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, stride, padding, dilation, groups).double()
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64) + 0.5
    with torch.no_grad():
        stats = layer_statistics(conv, x, conv(x), "positive" if positive else "linear")
        oracle = _unfold_statistics(conv, x, positive)
    stats = _uncentered(stats)
    for field, expected in oracle.items():
        got = getattr(stats, field)
        got = got.expand_as(expected) if field == "sum_input" else got
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10)


def test_conv_statistics_stride_two_padding_dilation_explicitly():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=2, dilation=2).double()
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64)
    with torch.no_grad():
        stats = _uncentered(layer_statistics(conv, x, conv(x), "positive"))
        oracle = _unfold_statistics(conv, x, True)
    torch.testing.assert_close(stats.sum_input_output, oracle["sum_input_output"])
    torch.testing.assert_close(stats.sum_input, oracle["sum_input"])
    torch.testing.assert_close(stats.count_regime, oracle["count_regime"])


def test_linear_statistics_equal_explicit_sums():
    torch.manual_seed(2)
    linear = nn.Linear(5, 3).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    with torch.no_grad():
        y = linear(x)
        stats = _uncentered(layer_statistics(linear, x, y, "positive"))
    for j in range(3):
        pos = y[:, j] > 0
        torch.testing.assert_close(stats.sum_input[j], x[pos].sum(0))
        torch.testing.assert_close(
            stats.sum_input_output[j], (x[pos] * y[pos, j, None]).sum(0)
        )
        assert stats.count_regime[j] == pos.sum()
    torch.testing.assert_close(stats.sum_output, y.sum(0))


@pytest.mark.parametrize("output_mean", ["regime", "all"])
def test_pattern_formula_on_a_linear_layer(output_mean):
    """a_j = (E+[x y] - E+[x] E+[y]) / w^T(...) (A+), or with E[y] over every
    sample (the PGIG paper's eq. 2), hand-computed per unit."""
    torch.manual_seed(3)
    linear = nn.Linear(4, 3).double()
    x = torch.randn(200, 4, dtype=torch.float64) + 1.0
    with torch.no_grad():
        linear.bias.copy_(-linear.weight.sum(1))  # y_j centered: both regimes full
        y = linear(x)
        assert ((y > 0).sum(0) > 20).all() and ((y <= 0).sum(0) > 20).all()
        stats = layer_statistics(linear, x, y, "positive")
        pattern = stats.pattern(linear.weight, output_mean=output_mean)
    for j in range(3):
        pos = y[:, j] > 0
        mean_y = y[pos, j].mean() if output_mean == "regime" else y[:, j].mean()
        cov = (x[pos] * y[pos, j, None]).mean(0) - x[pos].mean(0) * mean_y
        expected = cov / (linear.weight[j] @ cov)
        torch.testing.assert_close(pattern[j], expected.detach(), rtol=1e-12, atol=0)


def test_statistics_merge_like_one_pass():
    torch.manual_seed(4)
    model = randomize_batchnorms(small_cnn().double())
    data = torch.randn(12, 3, 8, 8, dtype=torch.float64)
    whole = accumulate_statistics(model, data, show_progress=False)
    halves = accumulate_statistics(model, data[:5], show_progress=False).merge(
        accumulate_statistics(model, data[5:], show_progress=False)
    )
    for name, stats in whole.items():
        merged, stats = _uncentered(halves[name]), _uncentered(stats)
        for field in (
            "count",
            "count_regime",
            "sum_output",
            "sum_output_regime",
            "sum_input",
            "sum_input_output",
        ):
            torch.testing.assert_close(getattr(merged, field), getattr(stats, field))
    assert whole.nbytes > 0


# ---------------------------------------------------------------- patterns


def _assert_normalized(model: nn.Module, patterns: Patterns, roles=None) -> None:
    modules = dict(model.named_modules())
    for name, pattern in patterns.items():
        batchnorm = None
        if roles is not None and roles[name].batchnorm is not None:
            batchnorm = modules[roles[name].batchnorm]
        weight = effective_weight(modules[name], batchnorm, dtype=torch.float64)
        products = (weight * pattern.double()).flatten(1).sum(1)
        live = pattern.flatten(1).abs().sum(1) > 0
        assert live.any()
        torch.testing.assert_close(
            products[live], torch.ones_like(products[live]), rtol=0, atol=1e-9
        )


def test_w_dot_a_is_one_for_every_live_unit_with_batchnorm_folded():
    model = randomize_batchnorms(small_cnn().double())
    data = torch.randn(32, 3, 8, 8, dtype=torch.float64)
    patterns = fit_patterns(model, data, show_progress=False, batch_size=10)
    roles = trace_layer_roles(model, data[:1], list(patterns))
    assert roles["0"].batchnorm == "1"
    _assert_normalized(model, patterns, roles)


def test_dead_units_get_zero_patterns():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].bias[1] = -1e3  # never in its positive regime
    x = torch.randn(50, 3, dtype=torch.float64)
    patterns = fit_patterns(model, x, show_progress=False)
    assert torch.equal(patterns["0"][1], torch.zeros(3, dtype=torch.float64))
    assert patterns["0"][0].abs().sum() > 0
    _assert_normalized(model, patterns)


def test_tiny_denominator_warns():
    generator = torch.Generator().manual_seed(6)
    z = torch.randn(500, generator=generator, dtype=torch.float64)
    noise = torch.randn(500, generator=generator, dtype=torch.float64)
    x = torch.stack([z, z + 1e-9 * noise], 1)
    model = nn.Sequential(nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
    with pytest.warns(RuntimeWarning, match="near-zero denominator"):
        fit_patterns(model, x, show_progress=False)


def test_batching_and_data_forms_give_the_same_patterns():
    torch.manual_seed(7)
    model = randomize_batchnorms(small_cnn().double())
    x = torch.randn(20, 3, 8, 8, dtype=torch.float64)
    labels = torch.zeros(20, dtype=torch.long)
    reference = fit_patterns(model, x, show_progress=False, batch_size=20)
    loader = DataLoader(TensorDataset(x, labels), batch_size=6)
    for data in (loader, [x[:7], x[7:]], iter([x[:3], x[3:]])):
        patterns = fit_patterns(model, data, show_progress=False)
        for name in reference:
            torch.testing.assert_close(patterns[name], reference[name])


def test_in_place_relu_does_not_corrupt_statistics():
    model = randomize_batchnorms(small_cnn().double())
    out_of_place = copy.deepcopy(model)
    out_of_place[2] = nn.ReLU(inplace=False)
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    a = fit_patterns(model, x, show_progress=False)
    b = fit_patterns(out_of_place, x, show_progress=False)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_batchnorm_folding_equals_an_explicitly_folded_model():
    model = randomize_batchnorms(small_cnn().double())
    folded = copy.deepcopy(model)
    bn = model[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        folded[0].weight.mul_(scale[:, None, None, None])
        folded[0].bias.copy_((model[0].bias - bn.running_mean) * scale + bn.bias)
    folded[1] = nn.Identity()
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(model(x), folded(x))
    a = fit_patterns(model, x, show_progress=False)
    b = fit_patterns(folded, x, show_progress=False)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


# ---------------------------------------------------------------- roles


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.conv2(h) + x)
        return self.fc(h.mean((2, 3)))


def test_roles_recognise_relu_batchnorm_and_residual_add():
    model = _Residual().eval()
    roles = trace_layer_roles(model, torch.randn(1, 3, 6, 6), ["conv1", "conv2", "fc"])
    assert roles["conv1"] == LayerRole(batchnorm="bn1", gate=RELU)
    assert roles["conv2"] == LayerRole(batchnorm=None, gate=None)
    assert roles["fc"] == LayerRole(batchnorm=None, gate=None)
    roles = trace_layer_roles(small_cnn(), torch.randn(1, 3, 8, 8), ["0", "4", "8"])
    assert roles["0"] == LayerRole(batchnorm="1", gate=RELU)
    assert roles["4"] == LayerRole(batchnorm=None, gate=RELU)
    assert roles["8"].gate is None


def test_estimator_override_per_layer():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    auto = accumulate_statistics(model, x, show_progress=False)
    assert auto["0"].estimator == "positive" and auto["2"].estimator == "linear"
    forced = accumulate_statistics(
        model, x, layers={"0": "linear", "2": "positive"}, show_progress=False
    )
    assert forced["0"].estimator == "linear" and forced["2"].estimator == "positive"
    only = fit_patterns(model, x, layers=["2"], show_progress=False)
    assert list(only) == ["2"]


# ---------------------------------------------------------------- Patterns


def test_save_load_round_trip(tmp_path):
    patterns = Patterns({"a": torch.randn(3, 4), "b.c": torch.randn(2, 3, 3, 3)})
    path = tmp_path / "patterns.pt"
    patterns.save(path)
    loaded = Patterns.load(path)
    assert list(loaded) == list(patterns)
    for name in patterns:
        assert torch.equal(loaded[name], patterns[name])


class _Exploit:
    def __reduce__(self):
        return (exec, ("import builtins; builtins._pattern_exploit = True",))


def test_load_never_executes_pickled_code(tmp_path):
    import builtins

    path = tmp_path / "evil.pt"
    torch.save({"format": "captum_baselines.Patterns", "patterns": _Exploit()}, path)
    with pytest.raises(pickle.UnpicklingError):
        Patterns.load(path)
    assert not hasattr(builtins, "_pattern_exploit")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved Patterns"):
        Patterns.load(tmp_path / "other.pt")


def test_check_names_and_shapes_says_what_does_not_match():
    model = small_cnn()
    good = Patterns({"0": torch.ones(6, 3, 3, 3), "8": torch.ones(4, 32)})
    good.check(model)
    bad = Patterns(
        {"0": torch.ones(6, 3, 3, 2), "nope": torch.ones(1), "2": torch.ones(1)}
    )
    with pytest.raises(ValueError) as error:
        bad.check(model)
    message = str(error.value)
    assert "`0`" in message and "(6, 3, 3, 2)" in message and "(6, 3, 3, 3)" in message
    assert "nope" in message and "ReLU" in message


def test_patterns_rejects_bad_values():
    with pytest.raises(TypeError):
        Patterns({"a": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="NaN"):
        Patterns({"a": torch.tensor([float("nan")])})
    with pytest.raises(TypeError):
        Patterns([torch.ones(1)])  # type: ignore[arg-type]


# ---------------------------------------------------------------- fit_patterns


def test_fit_patterns_bad_arguments():
    model = small_cnn()
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(ValueError, match="empty"):
        fit_patterns(model, [], show_progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fit_patterns(model, x.clone().fill_(float("nan")), show_progress=False)
    with pytest.raises(ValueError, match="no module named"):
        fit_patterns(model, x, layers=["missing"], show_progress=False)
    with pytest.raises(ValueError, match="ReLU"):
        fit_patterns(model, x, layers=["2"], show_progress=False)
    with pytest.raises(ValueError, match="estimator"):
        fit_patterns(model, x, layers={"0": "median"}, show_progress=False)
    with pytest.raises(TypeError, match="data"):
        fit_patterns(model, 3.0, show_progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit_patterns(model, x, batch_size=0, show_progress=False)
    reflect = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="padding_mode"):
        fit_patterns(reflect, x, show_progress=False)


def test_fit_patterns_leaves_the_model_as_found():
    model = small_cnn().train()
    x = torch.randn(8, 3, 8, 8)
    with model_unchanged(model):
        patterns = fit_patterns(model, x, show_progress=False)
    assert set(patterns) == {"0", "4", "8"}
    assert all(p.dtype == torch.float32 for p in patterns.values())


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_fit_patterns_leaves_the_model_as_found_when_forward_fails(fail_at):
    inner = small_cnn()
    wrapped = FailingForward(inner, fail_at=fail_at)
    x = torch.randn(8, 3, 8, 8)
    with model_unchanged(inner):
        with pytest.raises(RuntimeError, match="on purpose"):
            fit_patterns(wrapped, [x[:4], x[4:]], show_progress=False)


def test_fit_patterns_skips_layers_the_forward_never_calls():
    class WithUnusedHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = small_cnn()
            self.unused = nn.Linear(4, 2)

        def forward(self, x):
            return self.body(x)

    model = WithUnusedHead()
    x = torch.randn(6, 3, 8, 8)
    with model_unchanged(model):
        with pytest.warns(UserWarning, match=r"skips \['unused'\].*never calls"):
            patterns = fit_patterns(model, x, show_progress=False)
    assert set(patterns) == {"body.0", "body.4", "body.8"}
    with pytest.raises(ValueError, match=r"`layers`: \['unused'\] are never called"):
        fit_patterns(model, x, layers=["body.0", "unused"], show_progress=False)


def test_fit_patterns_rejects_bad_output_mean_and_distributed():
    model = small_cnn()
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(ValueError, match="`output_mean`"):
        fit_patterns(model, x, show_progress=False, output_mean="mean")
    with pytest.raises(ValueError, match="`distributed=True`"):
        fit_patterns(model, x, show_progress=False, distributed=True)
    with pytest.raises(TypeError, match="`distributed`"):
        fit_patterns(model, x, show_progress=False, distributed="yes")


# ---------------------------------------------------------------- the PGIG toy


def _stress_test(mu: float):
    """Sec. 3 of the PGIG paper with a distractor of mean ``mu``: z in [-2, 2)
    step 0.01, x = (1, 0) z + (1, 1) eps, eps ~ N(mu, 0.3^2),
    f(x) = 1 - ReLU(1 - w^T x) with w = (1, -1) as two dense layers."""
    generator = torch.Generator().manual_seed(0)
    z = torch.arange(-2.0, 2.0, 0.01, dtype=torch.float64)
    eps = mu + 0.3 * torch.randn(len(z), generator=generator, dtype=torch.float64)
    x = torch.stack([z + eps, eps], 1)
    model = stress_test_model()
    torch.testing.assert_close(model(x)[:, 0], 1 - F.relu(1 - z))
    return model, x


@pytest.mark.parametrize("mu", [0.0, 0.5, -1.0])
def test_pgig_ignores_a_distractor_of_any_mean_with_the_positive_regime(mu):
    """A+ with every moment over the positive regime: PGIG's mean |a2| < 0.01
    whatever the distractor's mean (measured 0.0013, 0.0018, 0.0055)."""
    from captum_baselines.attr.pgig import PatternGuidedIntegratedGradients

    model, x = _stress_test(mu)
    patterns = fit_patterns(model, x, show_progress=False)
    pgig = PatternGuidedIntegratedGradients(model, patterns)
    attribution = pgig.attribute(x, target=0, n_steps=32)
    assert attribution[:, 1].abs().mean() < 0.01
    torch.testing.assert_close(
        patterns["0"],
        torch.tensor([[-1.0, 0.0]], dtype=torch.float64),
        atol=0.01,
        rtol=0,
    )


def test_the_pgig_papers_printed_eq2_leaks_a_distractor_of_nonzero_mean():
    """``output_mean="all"`` (E[y] over every sample, the PGIG paper's eq. 2):
    at mu = 0.5 the distractor leaks (mean |a2| measured 0.109; 0.478 at -1)."""
    from captum_baselines.attr.pgig import PatternGuidedIntegratedGradients

    model, x = _stress_test(0.5)
    patterns = fit_patterns(model, x, show_progress=False, output_mean="all")
    pgig = PatternGuidedIntegratedGradients(model, patterns)
    attribution = pgig.attribute(x, target=0, n_steps=32)
    assert 0.05 < attribution[:, 1].abs().mean() < 0.2


def test_batches_of_different_sizes_accumulate_like_merged_statistics():
    """Small batches are pooled before their products; a change of image size
    flushes the pool.  Either way the sums are those of the batches merged."""
    model = randomize_batchnorms(small_cnn().double())
    generator = torch.Generator().manual_seed(9)
    batches = [
        torch.randn(3, 3, 8, 8, generator=generator, dtype=torch.float64),
        torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64),
        torch.randn(4, 3, 10, 10, generator=generator, dtype=torch.float64),
        torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64),
    ]
    pooled = accumulate_statistics(model, batches, show_progress=False)
    separate = [accumulate_statistics(model, [b], show_progress=False) for b in batches]
    merged = separate[0]
    for other in separate[1:]:
        merged = merged.merge(other)
    for name in pooled:
        a, b = _uncentered(pooled[name]), _uncentered(merged[name])
        for field in ("count", "count_regime", "sum_output", "sum_input"):
            torch.testing.assert_close(getattr(a, field), getattr(b, field))
        torch.testing.assert_close(a.sum_input_output, b.sum_input_output)
