"""Search spaces: arch-string syntax on the real data, sizes, sampling, encodings, errors, CLI."""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from itertools import product

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from search_service.cli import app, main
from supernet import (
    FBNET_OPS,
    NB201_OPS,
    TRACK2_TASKS,
    MultipathSpace,
    Subnet,
    get_space,
    list_spaces,
)

PRESETS = ["ufo-track2", "ufo2-multipath", "fbnet", "nasbench201"]


def _csv_archs(path) -> list[str]:
    # csv, not pandas: pandas would read the 22-digit FBNet codes as integers and drop leading zeros.
    with open(path, newline="") as handle:
        return [row["arch"] for row in csv.DictReader(handle)]


def small_multipath() -> MultipathSpace:
    return MultipathSpace({"a": 3, "b": 2}, depths=(1, 2), mlp_ratios=(4.0, 3.0), num_heads=(2, 1))


# ---------------------------------------------------------------------- presets and real data
def test_presets_are_listed_and_unknown_space_is_rejected() -> None:
    assert list_spaces() == PRESETS
    with pytest.raises(ValueError, match=r"unknown space 'resnet'.*ufo-track2"):
        get_space("resnet")


def test_track2_round_trips_every_real_arch(data_dir) -> None:
    records = json.loads((data_dir / "ufo_track2" / "train.json").read_text())
    space = get_space("ufo-track2")
    archs = [r["arch"] for r in records.values()]
    subs = space.parse_many(archs)
    assert [space.format(s) for s in subs] == archs
    assert {s.depth for s in subs} == {10, 11, 12}
    # The tasks are exactly the rank columns of the data, in the data's order.
    first = next(iter(records.values()))
    assert space.tasks == [k.removesuffix("_rank") for k in first if k != "arch"] == list(TRACK2_TASKS)
    assert space.cardinality == 9**10 + 9**11 + 9**12 == 317_297_380_491


def test_fbnet_round_trips_every_real_arch(data_dir) -> None:
    space = get_space("fbnet")
    archs = _csv_archs(data_dir / "device_latency" / "fbnet.csv")
    assert len(archs) == 5000 and any(a.startswith("0") for a in archs)
    assert [space.format(s) for s in space.parse_many(archs)] == archs
    assert space.cardinality == 9**22 and len(FBNET_OPS) == 9


def test_nasbench201_real_archs_are_the_whole_space(data_dir) -> None:
    space = get_space("nasbench201")
    archs = _csv_archs(data_dir / "device_latency" / "nasbench201.csv")
    subs = space.parse_many(archs)
    assert [space.format(s) for s in subs] == archs
    # 15,625 distinct cells: the data set is the complete space, which enumerate() must reproduce.
    assert set(subs) == set(space.enumerate()) and space.cardinality == 5**6 == len(set(subs))
    assert len(NB201_OPS) == 5


def test_multipath_preset_round_trip_and_size() -> None:
    space = get_space("ufo2-multipath")
    assert space.cardinality == 18**10 + 18**11 + 18**12
    subs = space.sample(300, seed=4)
    archs = [space.format(s) for s in subs]
    assert all(len(a) == 2 + 3 * 12 for a in archs)
    assert space.parse_many(archs) == subs
    assert [space.from_config(space.config(s)) for s in subs] == subs


@pytest.mark.parametrize("name", PRESETS)
def test_config_and_choice_matrix_round_trip(name: str) -> None:
    space = get_space(name)
    subs = space.sample(50, seed=1)
    assert [space.from_config(space.config(s)) for s in subs] == subs
    codes = space.choice_matrix(subs)
    assert codes.shape == (50, space.max_depth, len(space.dimensions))
    assert space.from_choice_matrix(codes, [s.depth for s in subs]) == subs


# ---------------------------------------------------------------------- cardinality by brute force
def test_small_multipath_cardinality_matches_enumeration_and_arch_strings() -> None:
    space = small_multipath()
    per_layer = 2 * 2 * 2  # ffn_path x mlp_ratio x num_heads
    formula = per_layer**1 + per_layer**2
    subs = list(space.enumerate())
    assert len(set(subs)) == len(subs) == space.cardinality == formula == 72
    # Independent count: every string over the arch alphabet that parses is one subnet.
    groups = ["".join(g) for g in product("st0", "120", "120")]
    valid = set()
    for depth, g1, g2 in product(("01", "02", "00", "03"), groups, groups):
        try:
            valid.add(space.parse(depth + g1 + g2))
        except ValueError:
            continue
    assert valid == set(subs)


@pytest.mark.parametrize(
    ("depths", "ratios", "heads", "expected"),
    [
        ((1, 2), (4.0, 3.0), (2, 1), 8 + 8**2),
        ((2,), (4.0,), (3, 2, 1), 6**2),
        ((1, 3), (4.0, 3.5, 3.0), (1,), 6 + 6**3),
    ],
)
def test_multipath_cardinality_formula(depths, ratios, heads, expected) -> None:
    space = MultipathSpace({"a": None}, depths=depths, mlp_ratios=ratios, num_heads=heads)
    assert space.cardinality == expected == len(set(space.enumerate()))


# ---------------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", PRESETS)
def test_sample_distinct_valid_reproducible(name: str) -> None:
    space = get_space(name)
    subs = space.sample(200, seed=7)
    assert len(subs) == len(set(subs)) == 200
    assert all(space.validate(s) is s for s in subs)
    assert space.sample(200, seed=7) == subs
    assert space.sample(200, seed=8) != subs
    assert space.sample(0, seed=1) == []


def test_sample_whole_small_space_and_too_many() -> None:
    space = small_multipath()
    assert set(space.sample(72, seed=0)) == set(space.enumerate())
    with pytest.raises(ValueError, match="cannot draw 73"):
        space.sample(73, seed=0)
    with pytest.raises(ValueError, match="cannot draw -1"):
        space.sample(-1)


def test_sample_depth_shares_follow_the_space() -> None:
    # Uniform over subnets means depth d is drawn with share 9**d / sum: 1/91, 9/91, 81/91.
    space = get_space("ufo-track2")
    n = 4000
    counts = Counter(s.depth for s in space.sample(n, seed=11))
    expected = n * np.array([1, 9, 81]) / 91
    observed = np.array([counts[d] for d in (10, 11, 12)])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 13.8  # 0.1% quantile of chi-square with 2 degrees of freedom
    np.testing.assert_allclose(space.depth_probabilities(), [1 / 91, 9 / 91, 81 / 91])


def test_sample_layer_choices_are_uniform() -> None:
    space = get_space("ufo-track2")
    codes = space.choice_matrix(space.sample(3000, seed=5))[:, 0, :]  # layer 0 is always active
    for k in range(codes.shape[1]):
        observed = np.bincount(codes[:, k], minlength=3)
        chi2 = float(((observed - 1000) ** 2 / 1000).sum())
        assert chi2 < 13.8


# ---------------------------------------------------------------------- encodings
def test_onehot_encoding_marks_absent_layers_explicitly() -> None:
    space = get_space("ufo-track2")
    sub = space.parse("j" + "123" * 0 + "131" * 10 + "000" * 2)
    other = space.parse("l" + "211" * 12)
    enc = space.encode([sub, other])
    # Per layer: num_heads (3 values + absent) then mlp_ratio (3 values + absent).
    assert enc.shape == (2, 12 * 8) == (2, space.encoding_dim("onehot")) and enc.dtype == torch.float64
    layers = enc.reshape(2, 12, 8)
    heads, ratio = layers[:, :, :4], layers[:, :, 4:]
    assert torch.equal(heads[0, :10], torch.tensor([1.0, 0, 0, 0]).expand(10, 4))
    assert torch.equal(ratio[0, :10], torch.tensor([0.0, 0, 1, 0]).expand(10, 4))
    # Layers 10 and 11 of the depth-10 subnet: exactly the absent columns are 1.
    assert torch.equal(heads[0, 10:], torch.tensor([0.0, 0, 0, 1]).expand(2, 4))
    assert torch.equal(ratio[0, 10:], torch.tensor([0.0, 0, 0, 1]).expand(2, 4))
    assert torch.equal(layers[1, :, [3, 7]], torch.zeros(12, 2))
    assert torch.equal(enc.sum(1), torch.tensor([24.0, 24.0]))


def test_ordinal_encoding_and_fixed_depth_spaces() -> None:
    space = get_space("ufo-track2")
    sub = space.parse("k" + "321" * 11 + "000")
    enc = space.encode([sub], kind="ordinal", dtype=torch.float32)
    assert enc.shape == (1, 12 * 3) and enc.dtype == torch.float32
    layers = enc.reshape(12, 3)  # num_heads, mlp_ratio, active
    assert torch.equal(layers[:11], torch.tensor([1.0, 0.5, 1.0]).expand(11, 3))
    assert torch.equal(layers[11], torch.zeros(3))
    # Fixed-depth spaces have no absent / active columns at all.
    fbnet = get_space("fbnet")
    assert fbnet.encode(fbnet.sample(3, seed=0)).shape == (3, 22 * 9)
    assert fbnet.encode(fbnet.sample(3, seed=0), kind="ordinal").shape == (3, 22)
    assert space.encode([]).shape == (0, 96)
    with pytest.raises(ValueError, match="unknown encoding 'binary'"):
        space.encode([sub], kind="binary")


# ---------------------------------------------------------------------- invalid input
@pytest.mark.parametrize(
    ("name", "arch", "message"),
    [  # (space, arch, the message must match)
        ("ufo-track2", "m" + "111" * 12, r"position 0 \(depth\) is 'm'; allowed: j, k, l"),
        (
            "ufo-track2",
            "j" + "411" + "111" * 9 + "000" * 2,
            r"position 1 \(layer 0 num_heads\) is '4'; allowed: 1, 2, 3",
        ),
        ("ufo-track2", "j" + "111" * 4 + "1x1" + "111" * 5 + "000" * 2, r"position 14 \(layer 4 mlp_ratio\)"),
        (
            "ufo-track2",
            "j" + "112" + "111" * 9 + "000" * 2,
            r"position 3 \(layer 0 embed_dim\) is '2'; allowed: 1",
        ),
        (
            "ufo-track2",
            "j" + "111" * 10 + "111" + "000",
            r"positions 31-33 \(layer 10, beyond depth 10\).*'000'",
        ),
        ("ufo-track2", "j111", r"37-character string"),
        ("ufo2-multipath", "13" + "s11" * 12, r"positions 0-1 \(depth\) are '13'; allowed: 10, 11, 12"),
        ("ufo2-multipath", "1\u00b2" + "s11" * 12, r"positions 0-1 \(depth\)"),
        (
            "ufo2-multipath",
            "12" + "s11" * 3 + "x11" + "s11" * 8,
            r"position 11 \(layer 3 ffn_path\) is 'x'; allowed: s, t",
        ),
        (
            "ufo2-multipath",
            "12" + "s14" + "s11" * 11,
            r"position 4 \(layer 0 num_heads\) is '4'; allowed: 1, 2, 3",
        ),
        ("fbnet", "9" * 22, r"position 0 is '9'; allowed: 0-8"),
        ("fbnet", "0" * 21, r"22-digit"),
        (
            "nasbench201",
            "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            r"op 'conv'; allowed: none, skip_connect",
        ),
        ("nasbench201", "|none~0|+|none~0|none~1|", r"3 '\+'-separated nodes"),
    ],
)
def test_invalid_arch_names_position_and_allowed_values(name: str, arch: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_space(name).parse(arch)


def test_invalid_subnets_configs_and_codes() -> None:
    space = get_space("ufo-track2")
    with pytest.raises(ValueError, match="belongs to space 'fbnet'"):
        space.validate(get_space("fbnet").sample(1, seed=0)[0])
    with pytest.raises(ValueError, match="depth 9 not allowed"):
        space.validate(Subnet("ufo-track2", 9, ((0, 0),) * 9))
    with pytest.raises(ValueError, match="mlp_ratio index 3 out of range"):
        space.validate(Subnet("ufo-track2", 10, ((0, 0),) * 9 + ((0, 3),)))
    with pytest.raises(ValueError, match="num_heads must be one of"):
        space.from_config({"depth": 10, "layers": [{"num_heads": 9, "mlp_ratio": 4.0}] * 10})
    with pytest.raises(ValueError, match="'layers'"):
        space.from_config({"depth": 10})
    with pytest.raises(ValueError, match="depth 11 but 10 layers"):
        space.from_config({"depth": 11, "layers": [{"num_heads": 12, "mlp_ratio": 4.0}] * 10})
    codes = space.choice_matrix(space.sample(1, seed=0))
    codes[0, 0, 0] = -1
    with pytest.raises(ValueError, match="num_heads index -1"):
        space.from_choice_matrix(codes, [12])
    with pytest.raises(ValueError, match="distinct"):
        MultipathSpace({"a": None}, mlp_ratios=(4.0, 4.0))


# ---------------------------------------------------------------------- CLI
def test_cli_spaces_show_prints_json() -> None:
    # `spaces show` prints the definition (tests/supernet/test_definition.py); --describe the
    # description of GET /v1/spaces/{space}.
    result = CliRunner().invoke(app, ["spaces", "show", "ufo-track2", "--describe"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert described["cardinality"] == "317297380491"
    assert described["tasks"] == list(TRACK2_TASKS)
    assert described["choices"] == {"num_heads": [12, 11, 10], "mlp_ratio": [4.0, 3.5, 3.0]}


def test_cli_spaces_list() -> None:
    result = CliRunner().invoke(app, ["spaces"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == PRESETS
    assert lines[0].split()[1] == "317297380491"


def test_cli_unknown_space_is_one_error_line(monkeypatch, capsys) -> None:
    # Through the console-script entry point, which turns ValueError into `error:` and exit 2.
    monkeypatch.setattr(sys, "argv", ["gpnas", "spaces", "show", "resnet"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown space 'resnet'")
    assert captured.out == ""
