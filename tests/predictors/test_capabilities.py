"""Predictor capabilities (predictors._capabilities): each registered predictor has exactly the
ones it claims, they work on a tiny fitted example, and callers test capabilities, not classes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from botorch.models import SingleTaskGP

import predictors.experimental  # noqa: F401  (every registered predictor is checked)
from predictors import (
    Predictor,
    SupportsBotorchModel,
    SupportsCovariance,
    SupportsPriorCovariance,
    SupportsUpdate,
    TransferPredictor,
    create_predictor,
    encode_subnets,
    list_predictors,
    predictor_class,
)
from supernet import get_space

ROOT = Path(__file__).resolve().parents[2]
CAPABILITIES = (SupportsCovariance, SupportsPriorCovariance, SupportsBotorchModel, SupportsUpdate)
GP = {SupportsCovariance, SupportsBotorchModel, SupportsUpdate}
# What each registered name claims; a new predictor must be added here, with what it can do.
EXPECTED = {
    "gpnas": GP,
    "gpnas-rbf": GP,
    "gpnas-ordinal": GP,
    "gpnas-transfer": GP | {SupportsPriorCovariance},
    "gpnas-closed-form": set(),
    "gbt": set(),
    "ridge": set(),
    "ridge-summary": set(),
    # Issue 15's accuracy models.
    "gpnas-calibrated": GP,
    "gpnas-layer": GP,
    "gpnas-layer-additive": GP,
    "gpnas-layer-pairwise": GP,
    "gpnas-multitask": GP | {SupportsPriorCovariance},
    "gpnas-multitask-linear": GP | {SupportsPriorCovariance},
    "ridge-joint": set(),
    "ridge-depth": set(),
    "ridge-from-end": set(),
    "ridge-rank": set(),
    "stack": set(),
    "stack-multitask": set(),
}
# Predictors whose fit_multi learns from the related columns.
RELATED = {"gpnas-transfer", "gpnas-multitask", "gpnas-multitask-linear", "stack-multitask"}
DEVICES = ["pixel2", "raspi4", "gold_6226"]
TARGET = DEVICES.index("raspi4")


@pytest.fixture(scope="module")
def tiny(nb201):
    """40 NAS-Bench-201 subnets x 3 devices' latencies, the target column measured on 12 of them,
    and 7 query subnets."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    Y = torch.tensor(nb201.loc[:39, DEVICES].to_numpy(), dtype=torch.float64)
    Y[12:, TARGET] = float("nan")
    return space, subs[:40], Y, subs[100:107]


def _claimed(predictor: Predictor) -> set[type]:
    return {capability for capability in CAPABILITIES if isinstance(predictor, capability)}


def test_the_default_registry_holds_the_service_defaults_and_the_baselines_only():
    # A fresh interpreter: this module has imported predictors.experimental.
    code = (
        "import json, predictors; from search_service.core.config import Settings; s = Settings(); "
        "defaults = [s.predictor_latency, s.predictor_score, s.fit_fallback]; "
        "print(json.dumps([predictors.list_predictors(), defaults]))"
    )
    listed, defaults = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert listed == ["gbt", "gpnas", "gpnas-closed-form", "gpnas-multitask", "gpnas-transfer", "ridge"]
    assert set(defaults) <= set(listed)


def test_every_registered_predictor_declares_its_capabilities():
    assert set(EXPECTED) == set(list_predictors())
    for name in list_predictors():
        assert predictor_class(name).uses_related_targets == (name in RELATED), name


@pytest.mark.parametrize("name", list_predictors())
def test_capabilities_work_on_a_fitted_example(tiny, name):
    space, subs, Y, queries = tiny
    unfitted = create_predictor(name, space, metric="latency_ms")
    # Capabilities belong to the class: an unfitted predictor claims the same (n_train says
    # whether it can use them yet), and using one before the fit is a ValueError.
    assert _claimed(unfitted) == EXPECTED[name]
    X = unfitted.encode(queries)
    if isinstance(unfitted, SupportsCovariance):
        with pytest.raises(ValueError, match="not fitted"):
            unfitted.posterior_covariance(X)
        with pytest.raises(ValueError, match="not fitted"):
            unfitted.noise_variance()
    if isinstance(unfitted, SupportsBotorchModel):
        with pytest.raises(ValueError, match="not fitted"):
            unfitted.botorch_model()
    if isinstance(unfitted, SupportsPriorCovariance):
        assert not unfitted.has_prior_covariance
    if isinstance(unfitted, SupportsUpdate):
        assert unfitted.n_hyperparameter_fit == 0
        with pytest.raises(ValueError, match="not fitted"):
            unfitted.update_multi(subs, Y, TARGET)

    fitted = unfitted.fit_multi(subs, Y, TARGET)
    assert fitted.n_train == 12 and _claimed(fitted) == EXPECTED[name]
    assert _claimed(Predictor.from_bytes(fitted.to_bytes())) == EXPECTED[name]
    rows = torch.nonzero(~torch.isnan(Y[:, TARGET])).squeeze(-1).tolist()
    alone = create_predictor(name, space, metric="latency_ms").fit([subs[i] for i in rows], Y[rows, TARGET])
    if fitted.uses_related_targets:
        # Any difference shows the related columns were used: with 12 values the multi-task
        # models' head is nearly the cost line alone, so their shared layer weights move the
        # predictions only in the 5th digit here.
        assert not torch.allclose(fitted.predict(queries)[0], alone.predict(queries)[0], rtol=1e-7, atol=0)
    else:  # the default fit_multi fits the target column alone
        torch.testing.assert_close(fitted.predict(queries), alone.predict(queries))

    if isinstance(fitted, SupportsCovariance):
        cov = fitted.posterior_covariance(X)
        assert cov.shape == (7, 7) and torch.allclose(cov, cov.T)
        assert float(torch.linalg.eigvalsh(cov).min()) > -1e-8
        noise = fitted.noise_variance()
        assert isinstance(noise, float) and noise > 0
    if isinstance(fitted, SupportsBotorchModel):
        model = fitted.botorch_model()
        assert isinstance(model, SingleTaskGP) and model is not fitted.botorch_model()
        with torch.no_grad():
            posterior = model.posterior(encode_subnets(space, queries, "onehot+ordinal"))
        assert posterior.mean.shape == (7, 1)
        if isinstance(fitted, SupportsCovariance):  # one GP seen through both capabilities
            torch.testing.assert_close(posterior.variance.squeeze(-1), cov.diagonal(), rtol=1e-4, atol=1e-6)
    if isinstance(fitted, SupportsUpdate):  # last: it changes the model
        assert fitted.n_hyperparameter_fit == 12
        more = Y.clone()
        more[12:15, TARGET] = alone.predict(subs[12:15])[0]
        assert fitted.update_multi(subs, more, TARGET) is fitted
        assert (fitted.n_train, fitted.n_hyperparameter_fit) == (15, 12)
    if isinstance(fitted, SupportsPriorCovariance):
        assert fitted.has_prior_covariance
        prior = fitted.prior_covariance(X)
        assert prior.shape == (7, 7) and torch.allclose(prior, prior.T)


def test_prior_covariance_of_a_target_with_no_values(tiny):
    space, subs, Y, queries = tiny
    related = [j for j in range(Y.shape[1]) if j != TARGET]
    sources = TransferPredictor(space, metric="latency_ms").fit_sources(subs, Y[:, related])
    assert sources.n_train == 0 and isinstance(sources, SupportsPriorCovariance)
    assert sources.has_prior_covariance
    prior = sources.prior_covariance(sources.encode(queries))
    assert prior.shape == (7, 7) and float(torch.linalg.eigvalsh(prior).min()) > -1e-8


def _concrete_predictor_classes() -> set[str]:
    """Names of every subclass of Predictor (registered or internal, e.g. the transfer target GP)."""
    names, todo = set(), list(Predictor.__subclasses__())
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def _private_predictor_members() -> set[str]:
    """``_name`` methods and ``self._name`` attributes of the classes in the predictors' modules."""
    names = set()
    for path in (ROOT / "predictors").glob("_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names.update(
                    f.name for f in node.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                )
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _caller_files() -> list[Path]:
    return [*sorted((ROOT / "search_service").rglob("*.py")), ROOT / "predictors" / "_sampling.py"]


def test_callers_test_capabilities_not_classes():
    """No caller branches on a concrete predictor class, reaches into a predictor's private
    members or imports a predictors module directly."""
    concrete = _concrete_predictor_classes()
    private = _private_predictor_members()
    assert {"TransferPredictor", "GPNASPredictor", "RidgePredictor"} <= concrete
    assert {"_state", "_check_fitted", "_shared_kernel"} <= private
    problems = []
    for path in _caller_files():
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                    named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                    if named & concrete:
                        problems.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.Compare) and any(isinstance(op, ast.Is | ast.Eq) for op in node.ops):
                sides = [node.left, *node.comparators]
                calls_type = any(
                    isinstance(s, ast.Call) and isinstance(s.func, ast.Name) and s.func.id == "type"
                    for s in sides
                )
                if calls_type and any(isinstance(s, ast.Name) and s.id in concrete for s in sides):
                    problems.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.Attribute) and node.attr in private:
                # A class's own members (self._x, cls._x, super()._x) are not another class's.
                own = (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")) or (
                    isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name)
                    and node.value.func.id == "super"
                )
                if not own:
                    problems.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("predictors._"):
                problems.append(f"{where}:{node.lineno}: from {node.module} import ...")
    assert not problems, "callers must use predictor capabilities:\n" + "\n".join(problems)
