"""GPU check of the torch-cuda profiler (run on a machine with a CUDA device, < 3 minutes).

Times a few ufo-track2 subnets (ViT-Base, 224x224) with the ``torch-cuda`` profiler in fp32,
fp16 and bf16 at batch 1 and 32, prints the numbers, checks the obvious (half precision is
faster than fp32 at batch 32, a larger subnet is not faster than a smaller one at batch 32),
then runs the gpu-marked pytest tests.

    python -m benchmarks.gpu_check            # from the repository root, gpnas installed (pip install -e .)
"""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from profilers import TorchCUDAProfiler
from supernet import get_space


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device visible: nothing to check")
        return 1
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    space = get_space("ufo-track2")
    largest, smallest = "l" + "111" * 12, "j" + "331" * 10 + "000" * 2
    archs = [largest, smallest] + [space.format(s) for s in space.sample(2, seed=0)]
    medians: dict[tuple[str, int, str], float] = {}
    failures = []
    start = time.perf_counter()
    header = ("dtype", "batch", "arch", "median ms", "p10", "p90", "rse", "n")
    print("{:5s} {:>5s} {:37s} {:>10s} {:>8s} {:>8s} {:>6s} {:>4s}".format(*header))
    for dtype in ("fp32", "fp16", "bf16"):
        for batch in (1, 32):
            profiler = TorchCUDAProfiler(space, dtype=dtype, batch_size=batch, max_seconds=5)
            for arch in archs:
                r = profiler.measure(arch)
                medians[dtype, batch, arch] = r.value
                print(
                    f"{dtype:5s} {batch:5d} {arch} {r.value:10.3f} {r.p10:8.3f} {r.p90:8.3f} "
                    f"{r.rse:6.3f} {r.repeats:4d}"
                )
            profiler.close()
    for half in ("fp16", "bf16"):
        if not medians[half, 32, largest] < medians["fp32", 32, largest]:
            failures.append(f"{half} is not faster than fp32 at batch 32")
    for dtype in ("fp32", "fp16", "bf16"):
        if medians[dtype, 32, largest] < medians[dtype, 32, smallest]:
            failures.append(f"{dtype}: the largest subnet timed faster than the smallest at batch 32")
    print(f"profiling took {time.perf_counter() - start:.1f} s")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "tests/profilers/test_runtimes.py"]
    )
    if tests.returncode != 0:
        failures.append(f"gpu-marked tests failed (exit {tests.returncode})")
    for failure in failures:
        print("FAIL:", failure)
    print("GPU check:", "FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
