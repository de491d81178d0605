"""`dnn compile FILE` (issue 17, point 3): the train step lowered and compiled, not trained.

The lowered parameter and state counts must equal the summary's; XLA's FLOPs for the digits
MLP's step are checked against the hand count of its matrix products (forward 2·B·in·out per
dense layer, backward twice that); an ensemble of two costs twice the FLOPs of one; the JSON
keys the issue names are there; a count mismatch is reported as an internal error.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from dnn.runtime import compile_report as cr
from dnn.runtime.cli import main

import dnn

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_the_mlp_step_costs_its_matrix_products() -> None:
    program = dnn.load(str(EXAMPLES / "digits_mlp.dnn"))
    report = cr.compile_report(program)
    assert report.equal and report.lowered_params == 50_826 and report.lowered_state == 0
    b, dense = 64, (64 * 256, 256 * 128, 128 * 10)
    matmuls = 6 * b * sum(dense)  # forward 2·B·in·out, backward (inputs and weights) 4·B·in·out
    assert report.batch == b
    assert report.flops is not None and 0.9 <= report.flops / matmuls <= 1.2
    assert report.compile_s > 0 and report.lower_s > 0
    # the step takes the whole train split (1,437 x 64 float32) as an argument
    assert report.peak_bytes is not None and report.peak_bytes > 1437 * 64 * 4
    pair = cr.compile_report(dnn.load(str(EXAMPLES / "digits_mlp.dnn"), ["train.ensemble=2"]))
    assert pair.members == 2 and pair.lowered_params == 50_826 and pair.equal
    assert pair.flops is not None and 1.9 <= pair.flops / report.flops <= 2.1


def test_json_reports_the_issues_keys_with_batch_statistics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compile", str(EXAMPLES / "digits_cnn.dnn"), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("lowered_params", "summary_params", "compile_s", "flops", "peak_bytes"):
        assert key in out, key
    assert out["lowered_params"] == out["summary_params"] == 62_378
    assert out["lowered_state"] == out["summary_state"] == 256  # batchnorm's running moments
    assert out["params_equal"] is True and out["backend"] == "cpu"


def test_a_count_mismatch_is_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = cr.compile_report

    def off_by_one(program: dnn.Program) -> cr.CompileReport:
        r = real(program)
        return dataclasses.replace(r, lowered_params=r.lowered_params + 1)

    monkeypatch.setattr(cr, "compile_report", off_by_one)
    path = tmp_path / "m.dnn"
    path.write_text(
        "dnn 1\nmodel m {\n  input x: f32[3]\n  dense(2)\n}\ntrain {\n  loss = mse\n}\n"
    )
    assert main(["compile", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "  parameters   lowered 9 != 8 in the summary" in out.splitlines()
    assert err == (
        f"{path}: internal error: the lowered module's parameter counts differ from the "
        "summary's (a word's parameter rule disagrees with its lowering); please report it "
        "with this spec\n"
    )


def test_a_spec_without_a_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.dnn"
    path.write_text("dnn 1\ntrain {\n  loss = mse\n}\n")
    assert main(["compile", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}: error: nothing to compile: the spec has no model\n"
    )
