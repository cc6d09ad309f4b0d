"""Spaces as data: every preset round-trips through its definition, a user's own space works like
a preset, bad definitions name the field, and the registry finds defined spaces through a source."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import supernet
from supernet import (
    UFO_COSTS,
    DefinitionError,
    IndexUFOSpace,
    SpaceDefinition,
    TaskDefinition,
    build_supernet,
    get_space,
    space_from_definition,
)

PRESETS = ["ufo-track2", "ufo2-multipath", "fbnet", "nasbench201"]

# A small UFO 2.0-style space with its own choices (and so the indices arch format).
USER: dict[str, Any] = {
    "name": "tiny-vit",
    "tasks": [
        {"name": "face", "head": 8, "metric": "verification"},
        {"name": "person", "metric": "reid"},
    ],
    "depths": [2, 3],
    "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [4, 2.0], "num_heads": [4, 2]},
    "per_task": ["ffn"],
    "geometry": {"embed_dim": 16, "patch_size": 8, "image_size": 16, "head_dim": 4},
}


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_round_trips(name: str) -> None:
    space = get_space(name)
    definition = space.to_definition()
    for text in (definition.to_json(), definition.to_yaml()):
        assert SpaceDefinition.from_text(text) == definition
    rebuilt = space_from_definition(definition)
    assert type(rebuilt) is type(space) and rebuilt is not space
    assert rebuilt.to_definition() == definition
    assert (rebuilt.name, rebuilt.tasks, rebuilt.depths, rebuilt.dimensions) == (
        space.name,
        space.tasks,
        space.depths,
        space.dimensions,
    )
    assert rebuilt.cardinality == space.cardinality and rebuilt.score_label == space.score_label
    assert [rebuilt.evaluation_metric(t) for t in space.tasks] == [
        space.evaluation_metric(t) for t in space.tasks
    ]
    if isinstance(space, supernet.UFOSpace):
        assert isinstance(rebuilt, supernet.UFOSpace)
        assert rebuilt.geometry == space.geometry and rebuilt.task_outputs == space.task_outputs
    subs = space.sample(25, seed=3)
    archs = [space.format(s) for s in subs]
    assert [rebuilt.format(rebuilt.parse(a)) for a in archs] == archs
    assert rebuilt.parse_many(archs) == subs
    for kind in ("onehot", "ordinal"):
        assert torch.equal(rebuilt.encode(subs, kind), space.encode(subs, kind))
    np.testing.assert_array_equal(rebuilt.costs(subs), space.costs(subs))
    np.testing.assert_array_equal(rebuilt.macs(subs), space.macs(subs))


def test_a_users_own_space_works_like_a_preset() -> None:
    space = space_from_definition(USER)
    assert isinstance(space, IndexUFOSpace) and space.name == "tiny-vit"
    assert space.tasks == ["face", "person"] and space.task_outputs == {"face": 8, "person": None}
    assert space.evaluation_metric("person") == "reid"
    assert [d.name for d in space.dimensions] == ["ffn_path", "mlp_ratio", "num_heads"]
    assert space.dimensions[1].values == (4.0, 2.0)  # ratios are floats however written
    assert space.cardinality == 8**2 + 8**3 == len(list(space.enumerate()))
    subs = space.sample(40, seed=0)
    for sub in subs:
        arch = space.format(sub)
        assert len(arch) == 2 + 3 * 3 and arch[:2] in ("02", "03") and space.parse(arch) == sub
    assert space.format(supernet.Subnet("tiny-vit", 2, ((0, 0, 0), (1, 1, 1)))) == "02111222000"
    assert space.encode(subs).shape == (40, space.encoding_dim())
    assert space.cost_names == UFO_COSTS and (space.costs(subs) > 0).any(axis=0)[:3].all()
    cheap, costly = space.cost_extremes()
    macs = space.macs(list(space.enumerate()))
    assert space.macs([cheap])[0] == macs.min() and space.macs([costly])[0] == macs.max()
    # The supernet and its extracted subnets have the analytic parameter counts.
    net = build_supernet(space, seed=0)
    sub = space.parse("03221112212")
    model = net.extract(sub, task="face")
    assert sum(p.numel() for p in model.parameters()) == space.param_count(sub, "face")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 8)
    with pytest.raises(
        ValueError, match=r"tiny-vit arch position 3 \(layer 0 mlp_ratio\) is '3'; allowed: 1, 2"
    ):
        space.parse("02131222000")
    with pytest.raises(ValueError, match=r"positions 8-10 \(layer 2, beyond depth 2\)"):
        space.parse("02111222111")


def _with(**changes: Any) -> dict[str, Any]:
    return {**USER, **changes}


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        (_with(name="bad name"), ("name",), "should match pattern"),
        (_with(family="resnet"), ("family",), "'ufo', 'fbnet' or 'nasbench201'"),
        (_with(tasks=[{"name": "a"}, {"name": "a"}]), ("tasks",), "tasks[1].name: task 'a' is listed twice"),
        (_with(tasks=[{"name": "a", "head": 0}]), ("tasks", 0, "head"), "greater than or equal to 1"),
        (_with(tasks=[{"name": "a", "width": 3}]), ("tasks", 0, "width"), "Extra inputs"),
        (_with(depths=[2, 2]), ("depths",), "distinct"),
        (_with(depths=[0, 3]), ("depths",), "1..99"),
        (
            _with(choices={**USER["choices"], "num_heads": [4, 2.5]}),
            ("choices",),
            "num_heads: values are integers",
        ),
        (
            _with(choices={**USER["choices"], "kernel": [3, 5]}),
            ("choices",),
            "kernel: not a choice of a ufo layer",
        ),
        (
            _with(choices={"ffn_path": ["shared", "task"], "num_heads": [4]}),
            ("choices",),
            "mlp_ratio: a ufo layer",
        ),
        (_with(choices={**USER["choices"], "mlp_ratio": [4, 4.0]}), ("choices",), "distinct"),
        (
            _with(choices={**USER["choices"], "ffn_path": ["shared", "expert"]}),
            ("choices",),
            "ffn_path: values",
        ),
        (_with(per_task=[]), ("per_task",), "an ffn_path choice routes to per-task FFN experts"),
        (_with(tasks=[]), ("per_task",), "at least one task"),
        (_with(geometry={"embed_dim": 16, "patch_size": 32, "image_size": 16}), ("geometry",), "exceeds"),
        (_with(geometry={"embed_dim": "16"}), ("geometry", "embed_dim"), "valid integer"),
        (_with(arch_format="fbnet"), ("arch_format",), "a ufo space spells its arch strings"),
        (_with(arch_format="track2"), ("choices",), "the track2 arch format fixes the choices"),
        (_with(depths=[90, 99]), ("choices",), "arch strings would have 299 characters"),
        (_with(score_bounds=[499, 0]), ("score_bounds",), "must lie below the high one"),
        (_with(score_bounds=[0, "inf"]), ("score_bounds", 1), "finite number"),
        (
            {"name": "nb", "family": "nasbench201", "tasks": [{"name": "c", "head": 10}]},
            ("tasks",),
            "no task heads",
        ),
        ({"name": "nb", "family": "nasbench201", "depths": [5]}, ("depths",), "fixes the depths to [6]"),
        ({"name": "nb", "family": "fbnet", "geometry": {}}, ("geometry",), "leave geometry out"),
        ({"name": "x"}, ("depths",), "Field required"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], loc: tuple, message: str) -> None:
    with pytest.raises(DefinitionError) as error:
        SpaceDefinition.load(data)
    found = {item_loc: text for item_loc, text in error.value.errors}
    assert loc in found, error.value.errors
    assert message in found[loc]
    assert str(error.value).startswith("invalid space definition: ")


def test_score_bounds_come_with_the_label_of_the_definition() -> None:
    track2 = get_space("ufo-track2").to_definition()
    assert track2.score_bounds == (0.0, 499.0) and "0-499" in track2.score_label
    # The same arch format with tasks of its own and its own label is not bounded by the ranks.
    fields = track2.model_dump(exclude={"score_bounds"})
    own = SpaceDefinition.load({**fields, "name": "t2-acc", "score_label": "top-1 accuracy"})
    assert space_from_definition(own).score_bounds == (None, None)
    bounded = SpaceDefinition.load({**own.model_dump(), "score_bounds": [0, 100]})
    assert space_from_definition(bounded).score_bounds == (0.0, 100.0)


def test_text_that_does_not_parse_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="not valid YAML"):
        SpaceDefinition.from_text("name: [")
    with pytest.raises(DefinitionError, match="not valid JSON"):
        SpaceDefinition.from_text("{name")
    with pytest.raises(DefinitionError, match="valid dictionary"):
        SpaceDefinition.from_text("[1, 2]")


def test_cell_spaces_take_the_presets_choices_and_their_own_tasks() -> None:
    definition = SpaceDefinition.load(
        {"name": "nb-cifar", "family": "nasbench201", "tasks": [{"name": "c10"}]}
    )
    space = space_from_definition(definition)
    preset = get_space("nasbench201")
    assert isinstance(space, supernet.NASBench201Space) and space.tasks == ["c10"]
    arch = preset.format(preset.sample(1, seed=0)[0])
    assert space.format(space.parse(arch)) == arch and space.parse(arch).space == "nb-cifar"
    assert (space.costs([space.parse(arch)]) == preset.costs([preset.parse(arch)])).all()
    assert space.to_definition() == definition


def test_a_task_added_later_changes_no_subnet() -> None:
    definition = SpaceDefinition.load(USER)
    before = space_from_definition(definition)
    extended = definition.with_task(TaskDefinition(name="vehicle", head=4))
    after = space_from_definition(extended)
    assert after.tasks == ["face", "person", "vehicle"] and extended.tasks[-1].metric == "top1"
    subs = before.sample(10, seed=1)
    archs = [before.format(s) for s in subs]
    assert [after.format(after.parse(a)) for a in archs] == archs
    assert torch.equal(after.encode(after.parse_many(archs)), before.encode(subs))
    with pytest.raises(DefinitionError, match="listed twice"):
        extended.with_task(TaskDefinition(name="face"))


# ---------------------------------------------------------------------- the registry
class DictSource:
    """A space source holding definitions in a dict (what the service's SQL source does in SQL)."""

    def __init__(self) -> None:
        self.definitions: dict[str, SpaceDefinition] = {}
        self.loads = 0

    def load(self, name: str) -> SpaceDefinition | None:
        self.loads += 1
        return self.definitions.get(name)

    def names(self) -> list[str]:
        return sorted(self.definitions)


@pytest.fixture
def source() -> Iterator[DictSource]:
    installed = DictSource()
    previous = supernet.set_space_source(installed)
    yield installed
    supernet.set_space_source(previous)


def test_get_space_finds_a_space_of_the_source_and_rereads_it_for_a_new_task(source: DictSource) -> None:
    with pytest.raises(ValueError, match="unknown space 'tiny-vit'"):
        get_space("tiny-vit")
    with pytest.raises(ValueError, match="unknown space 'tiny-vit'"):
        get_space("tiny-vit")
    assert source.loads == 1  # a miss is remembered for a moment: one look-up per burst
    definition = SpaceDefinition.load(USER)
    source.definitions["tiny-vit"] = definition  # registered by another process
    space = supernet.reload_space("tiny-vit")  # (get_space would wait out the remembered miss)
    assert get_space("tiny-vit") is space and source.loads == 2  # cached
    assert supernet.list_spaces() == [*PRESETS, "tiny-vit"]
    # Another process adds a task: this one reads the space again when it meets the task.
    source.definitions["tiny-vit"] = definition.with_task(TaskDefinition(name="vehicle"))
    assert "vehicle" not in get_space("tiny-vit").tasks
    assert "vehicle" in supernet.space_with_task("tiny-vit", "vehicle").tasks
    assert "vehicle" in get_space("tiny-vit").tasks and source.loads == 3
    # A task the source lacks too is asked for once per burst.
    for _ in range(100):
        assert "truck" not in supernet.space_with_task("tiny-vit", "truck").tasks
    assert source.loads == 4
    assert supernet.space_with_task("tiny-vit", "face") is get_space("tiny-vit") and source.loads == 4


def test_presets_cannot_be_registered_over(source: DictSource) -> None:
    with pytest.raises(ValueError, match="is a preset"):
        supernet.register_space(get_space("fbnet").to_definition())
    registered = supernet.register_space(SpaceDefinition.load(USER))
    assert get_space("tiny-vit") is registered and source.loads == 0
    with pytest.raises(ValueError, match="registered already"):
        supernet.register_space(SpaceDefinition.load(USER))
    # A new source: spaces of (or registered before) the old one are forgotten.
    supernet.set_space_source(DictSource())
    with pytest.raises(ValueError, match="unknown space"):
        get_space("tiny-vit")
