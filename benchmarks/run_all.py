"""Runs every benchmark one after the other and writes one combined JSON with a summary of the targets.

    nice -n -10 python benchmarks/run_all.py --quick --threads 1   # a few minutes per script on a 2-core CPU
    python benchmarks/run_all.py                               # the full versions (long on a CPU)
    OMP_NUM_THREADS=1 python benchmarks/run_all.py --smoke --quick --threads 1   # ~1 min: checks the code runs

The summary records, for each target of issue 9 and each config (and dtype for the AR), the value, the target
and whether it is met. `ar_decoding` runs with `--compile` (a torch.compile trial of the cached step) unless
`--no-compile`.

Each script also writes its own JSON under `benchmarks/results/`; the combined file is
`benchmarks/results/all.json` (or --out). The benchmarks run in sequence, never in parallel (they would
measure each other). Options after `--` are passed to every script (e.g. `-- --configs small`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import BENCHMARKS, check_target, machine, write

SCRIPTS = ["ar_decoding", "end_to_end", "batched", "nar", "training"]

# --smoke: the small config at toy sizes (and a 2-layer 64-wide AR model), only to check that every script runs
# and the summary is built; its numbers mean nothing. Written under --results-dir (default: a temporary folder).
SMOKE_ARGS = {
    "ar_decoding": ["--smoke", "--seconds", "0.2", "--prompt-seconds", "0.2", "--phonemes", "10", "--recompute-samples",
                    "2", "--compile-steps", "6", "--compile-modes", "default", "--compare-steps", "5"],
    "end_to_end": ["--configs", "small", "--seconds", "0.1", "--prompt-seconds", "0.2", "--phonemes", "5",
                   "--naive-samples", "2"],
    "batched": ["--configs", "small", "--seconds", "0.1", "--prompt-seconds", "0.1", "--phonemes", "5", "--batches", "1",
                "16"],
    "nar": ["--configs", "small", "--seconds", "0.1", "--prompt-seconds", "0.1", "--phonemes", "5"],
    "training": ["--configs", "small", "--batch-size", "1", "--seconds", "0.2", "--phonemes", "5", "--steps", "1"],
}


def run_script(
    name: str, quick: bool, extra: list[str], threads: int | None, compile_trial: bool = True,
    smoke: bool = False, results: str | None = None,
) -> dict:
    if threads:
        extra = [*extra, "--threads", str(threads)]
    if smoke:
        extra = [*extra, *SMOKE_ARGS[name]]
    results = results or os.path.join(BENCHMARKS, "results")
    if name == "ar_decoding":  # one config per call, no --quick
        parts = []
        for config in ("small",) if smoke else ("paper", "small"):
            out = os.path.join(results, f"ar_decoding_{config}{'_quick' if quick else ''}.json")
            command = [sys.executable, os.path.join(BENCHMARKS, "ar_decoding.py"), "--config", config, "--out", out]
            if smoke:
                command += SMOKE_ARGS[name]
            elif quick:
                command += ["--seconds", "2", "--recompute-samples", "3"]
            if threads:
                command += ["--threads", str(threads)]
            if compile_trial:
                command.append("--compile")
            subprocess.run(command, check=True)
            with open(out) as handle:
                parts.append(json.load(handle))
        return {"benchmark": "ar_decoding_batch1", "quick_settings": "--seconds 2 --recompute-samples 3" if quick else None,
                "per_config": parts}
    out = os.path.join(results, f"{name}.json")
    command = [sys.executable, os.path.join(BENCHMARKS, f"{name}.py"), "--out", out, *extra]
    if quick:
        command.append("--quick")
    subprocess.run(command, check=True)
    with open(out) as handle:
        return json.load(handle)


def summary(combined: dict) -> dict:
    """The measured values, and for each target of issue 9 per config: value, target and whether it is met."""
    rows = {}
    targets = {
        "ar_cached_step_over_bandwidth_floor_batch1": {},
        "end_to_end_speedup_vs_naive_10s": {},
        "batch16_over_batch1_audio_throughput": {},
        "nar_over_gemm_floor": {},
    }
    for part in combined.get("ar_decoding", {}).get("per_config", []):
        for run in part["runs"]:
            rows[f"ar_{run['config']}_{run['dtype']}_cached_over_floor"] = run["cached_over_floor"]
            check = check_target(run["cached_over_floor"], 1.3, "<=")
            check["seconds_generated"] = run["steps"] / 75
            targets["ar_cached_step_over_bandwidth_floor_batch1"].setdefault(run["config"], {})[run["dtype"]] = check
    for run in combined.get("end_to_end", {}).get("runs", []):
        rows[f"end_to_end_{run['config']}_speedup"] = run["speedup_end_to_end"]
        rows[f"end_to_end_{run['config']}_rtf"] = run["ours"]["rtf"]
        check = check_target(run["speedup_end_to_end"], 20, ">=")
        check["audio_seconds"] = run["audio_seconds"]
        targets["end_to_end_speedup_vs_naive_10s"][run["config"]] = check
    for run in combined.get("batched", {}).get("runs", []):
        for row in run["rows"]:
            if row["batch"] == 16:
                rows[f"batched_{run['config']}_batch16_vs_batch1"] = row["throughput_vs_batch1"]
                check = check_target(row["throughput_vs_batch1"], 8, ">=")
                check["seconds_per_item"] = run["frames_per_item"] / 75
                targets["batch16_over_batch1_audio_throughput"][run["config"]] = check
    for run in combined.get("nar", {}).get("runs", []):
        rows[f"nar_{run['config']}_over_gemm_floor"] = run["nar_over_floor"]
        targets["nar_over_gemm_floor"][run["config"]] = check_target(run["nar_over_floor"], 2, "<=")
    for run in combined.get("training", {}).get("runs", []):
        rows[f"training_{run['config']}_acoustic_tokens_per_s"] = run["acoustic_tokens_per_s_forward_backward"]
    checks = [
        leaf
        for per_config in targets.values()
        for entry in per_config.values()
        for leaf in (entry.values() if "met" not in entry else [entry])
    ]
    return {
        "values": rows,
        "targets": targets,
        "targets_met": sum(c["met"] for c in checks),
        "targets_checked": len(checks),
        "all_met": bool(checks) and all(c["met"] for c in checks),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, default=SCRIPTS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in every script (default: torch's)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip ar_decoding's torch.compile trial of the cached step")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, small config only: checks the code runs")
    parser.add_argument("--results-dir", default=None,
                        help="where each script's JSON goes (default benchmarks/results; with --smoke a temporary folder)")
    parser.add_argument("--out", default=None)
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.smoke and args.results_dir is None:
        import tempfile

        args.results_dir = tempfile.mkdtemp(prefix="valle_bench_smoke_")
    if args.smoke and args.out is None:
        args.out = os.path.join(args.results_dir, "all.json")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    combined = {"quick": args.quick, "smoke": args.smoke, "threads_option": args.threads, "machine": machine()}
    for name in args.only:
        start = time.perf_counter()
        combined[name] = run_script(
            name, args.quick, extra, args.threads, args.compile, smoke=args.smoke, results=args.results_dir
        )
        combined[name]["script_wall_s"] = time.perf_counter() - start
        print(f"== {name} done in {combined[name]['script_wall_s']:.0f} s", flush=True)
    combined["summary"] = summary(combined)
    write(combined, "all", args.out)


if __name__ == "__main__":
    main()
