"""The reading of a comparison: flags and rankings computed from the table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from captum_baselines.metrics.compare import MethodResult
from captum_baselines.study.problems import (
    VARIANTS,
    LayerChoice,
    Problem,
    Settings,
)
from captum_baselines.study.report import Score, read, scores, write_report
from captum_baselines.study.runner import Outcome


@dataclass
class Table:
    """A stand-in for ``ComparisonResult``: the rows the report reads."""

    rows: list[dict[str, Any]]
    curve_names: tuple[str, ...] = ("top_k", "mass_center")
    methods: dict[str, MethodResult] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]

    def format_table(self) -> str:
        return "| table |"


def row(method: str, top_k: float, mass: float, delta: float = math.nan, **more):
    return {
        "method": method,
        "auc_top_k": top_k,
        "auc_mass_center": mass,
        **more,
        "abs_delta": delta,
        "seconds": 0.1,
    }


def outcome(rows, *, side: int = 16, layer=None, variant=None, methods=None):
    images = torch.zeros(len(rows), 1, side, side)
    problem = Problem(
        nn.Identity(),
        images,
        torch.zeros(len(rows), dtype=torch.long),
        (0.0, 1.0),
        images,
        layer,
        "title",
        "description",
        facts={"variant": "x"},
        variant=variant,
    )
    return Outcome(problem, Table(rows, methods=methods or {}), {}, 1.0)  # type: ignore[arg-type]


def test_scores_read_intervals_when_the_table_has_them():
    rows = [row("A", 0.2, 0.3, auc_top_k_low=0.15, auc_top_k_high=0.25)]
    top, mass = scores(rows, "top_k")["A"], scores(rows, "mass_center")["A"]
    assert top == Score(0.2, 0.15, 0.25) and str(top) == "0.200 [0.150, 0.250]"
    assert mass == Score(0.3) and not mass.has_interval and str(mass) == "0.300"
    assert top.separable_from(Score(0.4, 0.3, 0.5))
    assert not top.separable_from(Score(0.3, 0.24, 0.4))
    assert not mass.separable_from(Score(0.9))  # without intervals: never


def test_every_method_worse_than_random_is_flagged_on_every_curve():
    rows = [row("A", 0.1, 0.50), row("B", 0.7, 0.40), row("C", 0.2, 0.46)]
    rows.append(row("random", 0.6, 0.45))
    reading = read(outcome(rows))
    assert reading.data["worse_than_random"] == {
        "top_k": ["B"],
        "mass_center": ["A", "C"],
    }
    (top, mass) = reading.flags
    assert top.startswith("Top-k ablation: 1 of 3 methods scores worse")
    assert "**B** 0.700" in top
    assert mass.startswith("Mass-center ablation: 2 of 3 methods score worse")


def test_no_ranking_without_intervals_nor_between_overlapping_intervals():
    plain = read(outcome([row("A", 0.10, 0.3), row("B", 0.11, 0.3)]))
    assert any("does not rank the methods" in line for line in plain.lines)
    intervals = {
        "A": (0.10, 0.08, 0.12),
        "B": (0.11, 0.09, 0.13),  # overlaps A: not ranked against it
        "C": (0.30, 0.28, 0.32),  # clearly apart
    }
    rows = [
        row(m, mean, 0.3, auc_top_k_low=low, auc_top_k_high=high)
        for m, (mean, low, high) in intervals.items()
    ]
    reading = read(outcome(rows))
    assert reading.data["lowest"]["top_k"] == {"method": "A", "tied": ["B"]}
    (line,) = [line for line in reading.lines if line.startswith("Top-k")]
    assert "**B** overlap its interval" in line and "**C**" not in line


def test_intervals_overlapping_the_control_are_flagged():
    rows = [
        row("A", 0.40, 0.3, auc_top_k_low=0.30, auc_top_k_high=0.50),
        row("B", 0.10, 0.3, auc_top_k_low=0.05, auc_top_k_high=0.15),
        row("random", 0.45, 0.5, auc_top_k_low=0.40, auc_top_k_high=0.50),
    ]
    reading = read(outcome(rows))
    assert reading.data["not_separable_from_random"] == {"top_k": ["A"]}
    assert "worse" not in " ".join(f for f in reading.flags if "Top-k" in f)


def test_completeness_residuals_far_above_the_others_are_flagged():
    deltas = {"A": 0.01, "B": 0.02, "C": 0.015, "D": 0.9, "E": math.nan}
    rows = [row(m, 0.1, 0.1, d) for m, d in deltas.items()]
    reading = read(outcome(rows))
    assert reading.data["completeness_outliers"] == ["D"]
    assert any(
        flag.startswith("**D**: mean completeness residual 0.9")
        for flag in reading.flags
    )


def test_a_layer_map_too_coarse_to_localize_is_flagged():
    layer = LayerChoice("features.7", nn.Identity(), (2, 2), "given by --layer")
    rows = [row("RSI-Grad-CAM uniform output", 0.1, 0.1), row("IG black", 0.2, 0.2)]
    reading = read(outcome(rows, side=64, layer=layer, methods=_ran(rows)))
    assert reading.data["layer"]["too_coarse"] is True
    (flag,) = [f for f in reading.flags if "too coarse" in f]
    assert "2x2 map of layer `features.7`" in flag and "32x32 px" in flag
    fine = LayerChoice("features.3", nn.Identity(), (8, 8), "chosen")
    reading = read(outcome(rows, side=64, layer=fine, methods=_ran(rows)))
    assert not any("too coarse" in f for f in reading.flags)
    assert any(
        "layer `features.3` (8x8 maps for 64x64 px images), chosen." in x
        for x in reading.lines
    )


def _ran(rows) -> dict[str, MethodResult]:
    return {
        r["method"]: MethodResult(r["method"], torch.zeros(1), {}, {}, None, 0.0)
        for r in rows
    }


def test_the_decoy_reading_returns_its_data_and_mutates_nothing(tmp_path):
    side = 16  # decoy patch: 2x2 px
    attributions = torch.zeros(2, 1, side, side)
    attributions[:, :, :2, :2] = 1.0  # all of it on the patch
    attributions[1, :, 8:, 8:] = 4.0 / 64  # image 2: half of its mass elsewhere
    methods = {
        "EG training data": MethodResult(
            "EG training data", attributions, {}, {}, None, 0.0
        )
    }
    rows = [row("EG training data", 0.1, 0.1), row("random", 0.5, 0.5)]
    done = outcome(rows, side=side, variant=VARIANTS["decoy"], methods=methods)
    facts = dict(done.problem.facts)
    reading = write_report(done, Settings(), tmp_path)
    assert reading.data["decoy_share"]["EG training data"] == 0.75
    assert done.problem.facts == facts  # the reading is returned, not stored
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["reading"]["decoy_share"] == {"EG training data": 0.75}
    assert document["flags"] == reading.flags
    report = (tmp_path / "results.md").read_text()
    assert "decoy patch (1.6% of the pixels): EG training data 75.0%" in report


def test_blind_spots_of_a_variant_are_read_against_the_others():
    rows = [
        row("IG black", 0.5, 0.3),
        row("IG blur", 0.1, 0.3),
        row("EG training data", 0.2, 0.3),
        row("random", 0.7, 0.3),
    ]
    reading = read(outcome(rows, variant=VARIANTS["inverted"]))
    (line,) = [line for line in reading.lines if "cannot attribute" in line]
    assert line == (
        "**IG black** cannot attribute black ink, where `x - x' = 0`: its Top-k "
        "ablation AUC is 0.500, against a median of 0.150 for the other methods and "
        "0.700 for the random control."
    )
