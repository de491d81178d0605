"""`dnn lr-find`: the range test's pure pieces against NumPy, and one short run end to end
(the rate written into the spec with `dnn fmt`, the plot, the JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dnn.runtime import lr_find
from dnn.runtime.cli import main

SPEC = """dnn 1
model tiny {
  input x: f32[4]
  dense(16) -> relu
  dense(3)
}
data {
  source = builtin("iris")
  normalize = standardize
}
train {
  batch_size = 16
  epochs = 1
  optimizer = adam(lr = 1e-3)  # the rate to replace
  schedule = cosine(decay_steps = 3 epochs)
  seed = 0
}
"""


def test_rates_grow_exponentially() -> None:
    r = lr_find.rates(1e-7, 10.0, 8)
    assert r[0] == 1e-7 and len(r) == 8
    assert np.allclose(r[1:] / r[:-1], (10.0 / 1e-7) ** (1 / 8))


def test_smoothing_is_the_debiased_moving_average() -> None:
    losses = np.array([2.0, 1.0, 4.0, 3.0])
    b = 0.98
    # by hand: avg_i = sum_j (1 - b) b^(i - j) x_j, divided by 1 - b^(i + 1)
    expected = [
        sum((1 - b) * b ** (i - j) * losses[j] for j in range(i + 1)) / (1 - b ** (i + 1))
        for i in range(4)
    ]
    assert lr_find.smooth(losses) == pytest.approx(expected, rel=1e-12)
    assert lr_find.smooth(losses)[0] == 2.0  # debiased: the first value is the first loss


def test_divergence_is_four_times_the_best_or_not_finite() -> None:
    assert lr_find.diverged_at(np.array([3.0, 2.0, 1.0, 3.9, 4.1])) == 4
    assert lr_find.diverged_at(np.array([3.0, 2.0, np.nan])) == 2
    assert lr_find.diverged_at(np.array([3.0, 2.0, 1.0])) is None


def test_suggestions_on_a_synthetic_curve() -> None:
    n = 100
    lrs = lr_find.rates(1e-6, 1.0, n)
    x = np.log10(lrs)  # -6 .. 0
    raw = 2.0 - np.tanh(2 * (x + 3)) + np.where(x > -1, 8 * (x + 1) ** 2, 0.0)
    sm = lr_find.smooth(raw)
    s = lr_find.suggest(lrs, sm, n)
    assert s is not None and s.window == (10, 95)
    w, r = sm[10:95], lrs[10:95]
    slopes = np.diff(w) / np.diff(np.log(r))  # per unit of log rate, as fastai's `steep`
    assert s.steepest == r[np.argmin(slopes)]
    assert s.minimum == r[np.argmin(w)] and s.minimum_10 == s.minimum / 10
    # the smoothed curve lags the raw one: its fastest fall comes a little after x = -3
    assert -3.0 < np.log10(s.steepest) < -2.0
    cut = sm.copy()
    cut[50:] = np.nan  # a diverged tail cuts the window
    assert lr_find.suggest(lrs, cut, n).window == (10, 50)  # type: ignore[union-attr]
    assert lr_find.suggest(lrs[:12], sm[:12], n) is None  # too few records


def test_lr_find_writes_the_rate_into_the_spec(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tiny.dnn"
    path.write_text(SPEC)
    png = tmp_path / "lr.png"
    args = ["lr-find", str(path), "--steps", "50", "-o", str(png), "--format", "json"]
    assert main([*args, "--write", "--use", "minimum"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert png.stat().st_size > 10_000 and out["plot"] == str(png)
    assert out["steps"] == len(out["records"]) <= 50
    records = out["records"]
    rates = [r["lr"] for r in records]
    assert rates == pytest.approx(list(lr_find.rates(1e-7, 10.0, 50)[: len(rates)]))
    losses = np.array([r["loss"] for r in records], dtype=float)
    assert [r["smoothed"] for r in records] == pytest.approx(list(lr_find.smooth(losses)))
    # the rate grows until the loss diverges: it ends at a loss above its start
    assert out["stopped"] is None or losses[-1] > losses[0]
    written = float(f"{out['suggested']['minimum_10']:.2g}")
    from dnn.compiler.driver import load
    from dnn.compiler.format import format_text

    text = path.read_text()
    assert "# the rate to replace" in text and format_text(text) == text
    assert load(str(path)).train.optimizer.arg("lr") == pytest.approx(written)
    assert "schedule = cosine(decay_steps = 3 epochs)" in text  # only the rate changed


def test_lr_find_refuses_an_optimizer_whose_rate_divides(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ftrl.dnn"
    path.write_text(SPEC.replace("adam(lr = 1e-3)", "ftrl(lr = 0.1)"))
    assert main(["lr-find", str(path), "--steps", "20", "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:14:15: error[E" in err and "`ftrl`'s rate is not a step size alone" in err
    assert "14 |   optimizer = ftrl(lr = 0.1)" in err and "hint: find the rate with" in err
