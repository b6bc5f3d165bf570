"""Small helpers shared by the benchmark scripts (machine description, GEMM rate, JSON output).

The AR helpers (configs, copy bandwidth, cached / recomputed decoding timers) live in `ar_decoding.py` and are
imported from there.
"""

from __future__ import annotations

import json
import os
import sys

import torch

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCHMARKS)
for path in (ROOT, BENCHMARKS):
    if path not in sys.path:
        sys.path.insert(0, path)

from ar_decoding import CONFIGS, best_seconds, machine  # noqa: E402,F401  (machine: re-exported for the scripts)


def gemm_rate(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best observed FLOP/s of one large square torch.matmul (2 n^3 FLOPs), the compute floor's yardstick."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)  # warm-up
    return 2 * size**3 / best_seconds(lambda: torch.matmul(a, b), repeats)


def decoder_matmul_flops(sizes: dict, batch: int, length: int) -> int:
    """FLOPs of the matrix multiplies of one decoder forward over `length` positions (every position attends to
    every key: the NAR is bidirectional; for a prefix-LM this is the dense upper bound the kernels compute)."""
    d, ff, layers = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_hidden_layers"]
    projections = 2 * batch * length * (4 * d * d + 2 * d * ff)
    attention = 2 * 2 * batch * length * length * d  # Q K^T and weights V
    return layers * (projections + attention)


def profile_top_ops(run, top: int = 10) -> list[dict]:
    """Runs `run()` once under `torch.profiler` (CPU) and returns the `top` operators by self CPU time: name,
    calls, self ms and share of the total self time (the format of the NAR's `profile_one_pass_top_ops`)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        run()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000, "share": e.self_cpu_time_total / total}
        for e in events[:top]
    ]


def check_target(value: float, bound: float, direction: str) -> dict:
    """{value, target, met}: `direction` is "<=" (at most) or ">=" (at least)."""
    met = value <= bound if direction == "<=" else value >= bound
    return {"value": value, "target": f"{direction} {bound:g}", "met": bool(met)}


def write(results: dict, name: str, out: str | None) -> str:
    results.setdefault("machine", {})["loadavg_at_end"] = list(os.getloadavg())
    out = out or os.path.join(BENCHMARKS, "results", f"{name}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"wrote {out}", flush=True)
    return out


def build_model(config_name: str, dtype: torch.dtype = torch.float32, **overrides):
    from configuration_valle import VallEConfig
    from modeling_valle import VallEForConditionalCodecGeneration

    config = VallEConfig(**{**CONFIGS[config_name], **overrides})
    torch.manual_seed(0)
    return VallEForConditionalCodecGeneration(config).eval().to(dtype)


def add_common_arguments(parser):
    parser.add_argument("--configs", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument("--quick", action="store_true", help="fewer repeats / sizes: a few minutes on a 2-core CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None)
