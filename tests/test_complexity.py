"""Complexity numbers: the published SNTL and CP-Mobile totals, precision, layer tables, complexity.json and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from asc_utils.cli import main
from asc_utils.complexity import MAX_PARAM_BYTES, complexity_json, complexity_report, param_bytes
from asc_utils.labels import DCASE_COMPLEXITY_DEVICES
from asc_utils.models import build_model


@pytest.fixture(scope="module")
def task1_2_report():
    return complexity_report(build_model("sntl_task1_2"))


def test_task1_2_published_numbers(task1_2_report):
    assert (task1_2_report.params, task1_2_report.param_bytes, task1_2_report.macs) == (58_605, 117_210, 10_902_300)
    assert task1_2_report.fits_dcase


def test_training_layout_is_undone_completely(task1_2_report):
    from asc_utils import speed

    model = speed.plain_layout(speed.for_training(build_model("sntl_task1_2")))  # what fit returns after training
    report = complexity_report(model)
    assert (report.params, report.param_bytes, report.macs) == (58_605, 117_210, 10_902_300)
    assert report.table.astype(str).equals(task1_2_report.table.astype(str))  # every layer seen, in the same order


def test_task1_1_published_numbers():
    report = complexity_report(build_model("sntl_task1_1"))
    assert (report.params, report.param_bytes, report.macs) == (58_171, 116_342, 10_902_300)


def test_cp_mobile_baseline_published_numbers():
    report = complexity_report(build_model("cp_mobile_baseline"), input_size=(1, 1, 256, 65))
    assert (report.params, report.macs) == (61_148, 29_419_156)
    rows = report.table.set_index("name")
    # two rows of the published layer table (conv + its BN): b3's time stride and b4's frequency stride
    assert rows.loc[["stages.2.depthwise.0", "stages.2.depthwise.1"], "MACs"].sum() == 331_904
    assert rows.loc[["stages.3.project.0", "stages.3.project.1"], "MACs"].sum() == 1_032_304
    assert report.fits_dcase  # 122,296 bytes at fp16 and 29.4 M MACs: just inside both limits
    assert not complexity_report(build_model("cp_mobile_baseline"), (1, 1, 256, 65), torch.float32).fits_dcase


@pytest.mark.parametrize("dtype, size", [(torch.float32, 4), (torch.float16, 2), (torch.int8, 1)])
def test_parameter_bytes_follow_the_precision(dtype, size):
    model = build_model("sntl_task1_2")
    assert param_bytes(model, dtype) == 58_605 * size
    assert complexity_report(model, dtype=dtype).param_bytes == 58_605 * size


def test_batchnorm_running_statistics_are_not_counted():
    norm = nn.BatchNorm2d(10)
    assert sum(t.numel() for t in norm.state_dict().values()) == 41  # weight, bias, mean, var, num_batches_tracked
    assert param_bytes(norm, torch.float32) == 80


def test_over_the_memory_limit_does_not_fit():
    model = nn.Sequential(nn.Flatten(), nn.Linear(256 * 33, 10))  # 84,490 parameters = 168,980 bytes at fp16
    report = complexity_report(model)
    assert report.param_bytes > MAX_PARAM_BYTES and not report.fits_dcase


def test_table_rows_add_up_to_the_totals(task1_2_report):
    table = task1_2_report.table
    assert list(table.columns) == ["name", "type", "output shape", "params", "MACs", "params share", "MACs share"]
    assert table["params"].sum() == 58_605 and table["MACs"].sum() == 10_902_300
    assert table["MACs share"].sum() == pytest.approx(1.0)
    unused = table[table["output shape"] == "(never called)"]
    assert set(unused["name"]) == {"unused_norm", "unused_linear"} and unused["params"].sum() == 434
    row = table.set_index("name").loc["max_branch.time_conv.conv"]
    assert (row["type"], row["output shape"], row["params"], row["MACs"]) == ("Conv2d", [1, 72, 64, 8], 360, 360 * 64 * 8)
    blocks = task1_2_report.by_block().set_index("block")
    assert blocks.loc["max_branch", "MACs"] == blocks.loc["avg_branch", "MACs"] == 2_696_724
    assert blocks["params"].sum() == 58_605


def test_report_leaves_the_model_untouched():
    model = build_model("sntl_task1_2").half().train()
    report = complexity_report(model)
    assert report.macs == 10_902_300 and report.param_bytes == 117_210
    assert model.training and next(model.parameters()).dtype == torch.float16


def test_complexity_json_for_one_model(tmp_path):
    out = tmp_path / "sub" / "complexity.json"
    result = complexity_json(build_model("sntl_task1_2"), path=out)
    assert json.loads(out.read_text()) == result
    assert list(result["per_device"]) == list(DCASE_COMPLEXITY_DEVICES)
    assert all(d == {"MACs": 10_902_300, "Params": 117_210} for d in result["per_device"].values())
    assert (result["max_MACs"], result["max_Params"]) == (10_902_300, 117_210)


def test_complexity_json_per_device_models():
    general, device_a = build_model("sntl_task1_1"), build_model("sntl_task1_2")
    result = complexity_json({"general": general, "a": device_a})
    assert result["per_device"]["a"]["Params"] == 117_210 and result["per_device"]["s10"]["Params"] == 116_342
    assert result["max_Params"] == 117_210
    same = complexity_json(lambda device: device_a if device == "a" else general)
    assert same == result
    with pytest.raises(ValueError, match="No model for devices"):
        complexity_json({"a": device_a})


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["complexity", "--model", "sntl_task1_2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max_branch.pointwise.conv" in printed and "10,902,300" in printed and "117,210 bytes" in printed
    assert json.loads(out.read_text())["max_MACs"] == 10_902_300
