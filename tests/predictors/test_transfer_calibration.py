"""A new chip's latency answers keep their promise: robust source columns, calibrated std."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predictors import Predictor, TransferPredictor
from predictors._transfer import _conformal_quantile
from supernet import get_space

Z90, Z80 = 1.6448536269514722, 1.2815515655446004


def test_conformal_quantile_by_hand():
    # ceil((n + 1) 0.9)-th smallest: the 10th of 10 (the largest) and the 19th of 20.
    assert _conformal_quantile(torch.arange(1.0, 11.0)) == 10.0
    assert _conformal_quantile(torch.arange(1.0, 21.0)) == 19.0
    assert _conformal_quantile(torch.tensor([3.0, 1.0, 2.0])) == 3.0


def test_robust_sources_keep_a_chip_that_skips_dead_graphs_in_scale(nb201):
    """raspi4 times cells whose output is (nearly) disconnected at ~0.01 ms, 2,500x below its
    median: on the plain standardised log scale those few rows squeeze every other value
    together. Clipped at 8 robust standard deviations before standardising, they squeeze less;
    a column without such rows is unchanged."""
    space = get_space("nasbench201")
    plain_model = TransferPredictor(space, metric="latency_ms", robust_sources=False)
    robust_model = TransferPredictor(space, metric="latency_ms")

    def robust_spread(z: torch.Tensor) -> float:
        return float(1.4826 * (z - z.median()).abs().median())

    raspi4 = torch.as_tensor(nb201["raspi4"].to_numpy().copy(), dtype=torch.float64)
    assert float((raspi4 < 0.5).double().mean()) > 0.005  # the dead-graph rows are in the sample
    plain, robust = plain_model._standardise_source(raspi4), robust_model._standardise_source(raspi4)
    assert robust_spread(plain) < 0.72 and robust_spread(robust) > 0.76  # 0.70 -> 0.77
    assert float(robust.std()) == pytest.approx(1.0) == float(plain.std())
    assert float(plain.min()) < -8.5 and float(robust.min()) > -6.1
    assert float(robust.median() - robust.min()) <= 8 * robust_spread(robust) * 1.0001
    fpga = torch.as_tensor(nb201["fpga"].to_numpy().copy(), dtype=torch.float64)
    assert torch.allclose(plain_model._standardise_source(fpga), robust_model._standardise_source(fpga))


@pytest.mark.parametrize("calibration", ["conformal", "conformal-upper"])
def test_calibrated_std_keeps_its_promise(nb201, calibration):
    """20 measurements of a held-out chip: on the left-out training points the scaled std's 90%
    interval (and, for conformal-upper, the 90% upper bound a budget checks) holds at least as
    often as promised, and on 200 unseen archs the 90% interval covers 80-100% of truths."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    devices = [c for c in nb201.columns if c != "arch"]
    target = devices.index("pixel2")  # a phone: the noisiest well-ranked chip of the table
    Y = torch.tensor(nb201.loc[:399, devices].to_numpy(), dtype=torch.float64)
    Y[20:, target] = float("nan")
    model = TransferPredictor(space, metric="latency_ms", calibration=calibration).fit_multi(
        subs[:400], Y, target
    )
    gp = model.target
    assert gp is not None
    mean, std = gp.loo_posterior()
    signed = (gp.z - mean) / (std * gp.std_scale)
    assert float((signed.abs() <= Z90).double().mean()) >= 0.9
    if calibration == "conformal-upper":
        assert float((signed <= Z80).double().mean()) >= 0.9
    truth = nb201.loc[1000:1199, "pixel2"].to_numpy()
    mean, std = (t.numpy() for t in model.predict(subs[1000:1200]))
    assert 0.8 <= float(np.mean(np.abs(truth - mean) <= Z90 * std)) <= 1.0
    restored = Predictor.from_bytes(model.to_bytes())
    assert torch.allclose(restored.predict(subs[1000:1010])[1], model.predict(subs[1000:1010])[1])


def test_unknown_calibration_is_refused():
    with pytest.raises(ValueError, match="calibration"):
        TransferPredictor(get_space("nasbench201"), metric="latency_ms", calibration="median")
