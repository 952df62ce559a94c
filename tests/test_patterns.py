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

from captum_baselines.attr.pattern_backward import (
    LayerRole,
    effective_weight,
    folded_batchnorm,
    trace_layer_roles,
)
from captum_baselines.attr.patterns import (
    Patterns,
    accumulate_statistics,
    fit_patterns,
    layer_statistics,
)
from tests.helpers import (
    FailingForward,
    model_unchanged,
    randomise_batchnorms,
    small_cnn,
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
        "sum_input": sum_x.reshape(shape),
        "sum_input_output": sum_xy.reshape(shape),
    }


@settings(max_examples=8, deadline=None)
@given(
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    positive=st.booleans(),
)
def test_conv_statistics_equal_unfold_oracle(
    stride, padding, dilation, groups, positive
):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride, padding, dilation, groups).double()
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64) + 0.5
    with torch.no_grad():
        stats = layer_statistics(conv, x, conv(x), "positive" if positive else "linear")
        oracle = _unfold_statistics(conv, x, positive)
    for field, expected in oracle.items():
        got = getattr(stats, field)
        got = got.expand_as(expected) if field == "sum_input" else got
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10)


def test_conv_statistics_stride_two_padding_dilation_explicitly():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=2, dilation=2).double()
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64)
    with torch.no_grad():
        stats = layer_statistics(conv, x, conv(x), "positive")
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
        stats = layer_statistics(linear, x, y, "positive")
    for j in range(3):
        pos = y[:, j] > 0
        torch.testing.assert_close(stats.sum_input[j], x[pos].sum(0))
        torch.testing.assert_close(
            stats.sum_input_output[j], (x[pos] * y[pos, j, None]).sum(0)
        )
        assert stats.count_regime[j] == pos.sum()
    torch.testing.assert_close(stats.sum_output, y.sum(0))


def test_pattern_formula_on_a_linear_layer():
    """a_j = (E+[x y] - E+[x] E[y]) / w^T(...), hand-computed per unit."""
    torch.manual_seed(3)
    linear = nn.Linear(4, 3).double()
    x = torch.randn(200, 4, dtype=torch.float64) + 1.0
    with torch.no_grad():
        y = linear(x)
        pattern = layer_statistics(linear, x, y, "positive").pattern(linear.weight)
    for j in range(3):
        pos = y[:, j] > 0
        cov = (x[pos] * y[pos, j, None]).mean(0) - x[pos].mean(0) * y[:, j].mean()
        expected = cov / (linear.weight[j] @ cov)
        torch.testing.assert_close(pattern[j], expected.detach())


def test_statistics_merge_like_one_pass():
    torch.manual_seed(4)
    model = randomise_batchnorms(small_cnn().double())
    data = torch.randn(12, 3, 8, 8, dtype=torch.float64)
    whole = accumulate_statistics(model, data, progress=False)
    halves = accumulate_statistics(model, data[:5], progress=False).merge(
        accumulate_statistics(model, data[5:], progress=False)
    )
    for name, stats in whole.items():
        for field in ("count", "count_regime", "sum_output", "sum_input"):
            torch.testing.assert_close(
                getattr(halves[name], field), getattr(stats, field)
            )
        torch.testing.assert_close(
            halves[name].sum_input_output, stats.sum_input_output
        )
    assert whole.nbytes > 0


# ---------------------------------------------------------------- patterns


def _assert_normalised(model: nn.Module, patterns: Patterns, roles=None) -> None:
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
    model = randomise_batchnorms(small_cnn().double())
    data = torch.randn(32, 3, 8, 8, dtype=torch.float64)
    patterns = fit_patterns(model, data, progress=False, batch_size=10)
    roles = trace_layer_roles(model, data[:1], list(patterns))
    assert roles["0"].batchnorm == "1"
    _assert_normalised(model, patterns, roles)


def test_dead_units_get_zero_patterns():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].bias[1] = -1e3  # never in its positive regime
    x = torch.randn(50, 3, dtype=torch.float64)
    patterns = fit_patterns(model, x, progress=False)
    assert torch.equal(patterns["0"][1], torch.zeros(3, dtype=torch.float64))
    assert patterns["0"][0].abs().sum() > 0
    _assert_normalised(model, patterns)


def test_tiny_denominator_warns():
    generator = torch.Generator().manual_seed(6)
    z = torch.randn(500, generator=generator, dtype=torch.float64)
    noise = torch.randn(500, generator=generator, dtype=torch.float64)
    x = torch.stack([z, z + 1e-9 * noise], 1)
    model = nn.Sequential(nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
    with pytest.warns(RuntimeWarning, match="near-zero denominator"):
        fit_patterns(model, x, progress=False)


def test_batching_and_data_forms_give_the_same_patterns():
    torch.manual_seed(7)
    model = randomise_batchnorms(small_cnn().double())
    x = torch.randn(20, 3, 8, 8, dtype=torch.float64)
    labels = torch.zeros(20, dtype=torch.long)
    reference = fit_patterns(model, x, progress=False, batch_size=20)
    loader = DataLoader(TensorDataset(x, labels), batch_size=6)
    for data in (loader, [x[:7], x[7:]], iter([x[:3], x[3:]])):
        patterns = fit_patterns(model, data, progress=False)
        for name in reference:
            torch.testing.assert_close(patterns[name], reference[name])


def test_in_place_relu_does_not_corrupt_statistics():
    model = randomise_batchnorms(small_cnn().double())
    out_of_place = copy.deepcopy(model)
    out_of_place[2] = nn.ReLU(inplace=False)
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    a = fit_patterns(model, x, progress=False)
    b = fit_patterns(out_of_place, x, progress=False)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_batchnorm_folding_equals_an_explicitly_folded_model():
    model = randomise_batchnorms(small_cnn().double())
    folded = copy.deepcopy(model)
    bn = model[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        folded[0].weight.mul_(scale[:, None, None, None])
        folded[0].bias.copy_((model[0].bias - bn.running_mean) * scale + bn.bias)
    folded[1] = nn.Identity()
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(model(x), folded(x))
    a = fit_patterns(model, x, progress=False)
    b = fit_patterns(folded, x, progress=False)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_folded_batchnorm_context_keeps_the_function_and_is_reversible():
    model = randomise_batchnorms(small_cnn().double())
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    roles = {"0": LayerRole(batchnorm="1", feeds_relu=True)}
    expected = model(x)
    with model_unchanged(model):
        with folded_batchnorm(model, roles):
            torch.testing.assert_close(model(x), expected)
        with pytest.raises(RuntimeError, match="on purpose"):
            with folded_batchnorm(model, roles):
                raise RuntimeError("on purpose")
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        with folded_batchnorm(model, roles):
            pass
    model.eval()


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
    assert roles["conv1"] == LayerRole(batchnorm="bn1", feeds_relu=True)
    assert roles["conv2"] == LayerRole(batchnorm=None, feeds_relu=False)
    assert roles["fc"] == LayerRole(batchnorm=None, feeds_relu=False)
    roles = trace_layer_roles(small_cnn(), torch.randn(1, 3, 8, 8), ["0", "4", "8"])
    assert roles["0"] == LayerRole(batchnorm="1", feeds_relu=True)
    assert roles["4"] == LayerRole(batchnorm=None, feeds_relu=True)
    assert roles["8"].feeds_relu is False


def test_estimator_override_per_layer():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    auto = accumulate_statistics(model, x, progress=False)
    assert auto["0"].estimator == "positive" and auto["2"].estimator == "linear"
    forced = accumulate_statistics(
        model, x, layers={"0": "linear", "2": "positive"}, progress=False
    )
    assert forced["0"].estimator == "linear" and forced["2"].estimator == "positive"
    only = fit_patterns(model, x, layers=["2"], progress=False)
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
        fit_patterns(model, [], progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fit_patterns(model, x.clone().fill_(float("nan")), progress=False)
    with pytest.raises(ValueError, match="no module named"):
        fit_patterns(model, x, layers=["missing"], progress=False)
    with pytest.raises(ValueError, match="ReLU"):
        fit_patterns(model, x, layers=["2"], progress=False)
    with pytest.raises(ValueError, match="estimator"):
        fit_patterns(model, x, layers={"0": "median"}, progress=False)
    with pytest.raises(TypeError, match="data"):
        fit_patterns(model, 3.0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit_patterns(model, x, batch_size=0, progress=False)
    reflect = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="padding_mode"):
        fit_patterns(reflect, x, progress=False)


def test_fit_patterns_leaves_the_model_as_found():
    model = small_cnn().train()
    x = torch.randn(8, 3, 8, 8)
    with model_unchanged(model):
        patterns = fit_patterns(model, x, progress=False)
    assert set(patterns) == {"0", "4", "8"}
    assert all(p.dtype == torch.float32 for p in patterns.values())


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_fit_patterns_leaves_the_model_as_found_when_forward_fails(fail_at):
    inner = small_cnn()
    wrapped = FailingForward(inner, fail_at=fail_at)
    x = torch.randn(8, 3, 8, 8)
    with model_unchanged(inner):
        with pytest.raises(RuntimeError, match="on purpose"):
            fit_patterns(wrapped, [x[:4], x[4:]], progress=False)
