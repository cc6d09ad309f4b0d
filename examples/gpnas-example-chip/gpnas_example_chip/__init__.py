"""A third-party gpnas chip: a roofline model of a small int8 accelerator (no hardware needed)."""

from profilers import LatencyProfiler, ProfileResult, Setting


class ExampleChipProfiler(LatencyProfiler):
    name, version = "example-chip", "1"
    settings_spec = {
        "tera_macs": Setting(float, 4.0, "peak tera-MACs per second", minimum=0.001),
        "bandwidth_gbs": Setting(float, 25.0, "weight bandwidth, GB/s (1 byte per weight)", minimum=0.001),
        "overhead_ms": Setting(float, 0.5, "fixed launch overhead", minimum=0.0),
    }

    def measure(self, sub) -> ProfileResult:
        sub, s = self.subnet(sub), self.settings
        compute_ms = self.space.flops(sub) / (s["tera_macs"] * 1e12) * 1e3
        memory_ms = self.space.param_count(sub) / (s["bandwidth_gbs"] * 1e9) * 1e3
        return ProfileResult(max(compute_ms, memory_ms) + s["overhead_ms"], environment={"chip": "npu"})
