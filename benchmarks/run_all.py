"""Runs every benchmark one after the other and writes one combined JSON with a summary of the targets.

    nice -n -10 python benchmarks/run_all.py --quick --threads 1   # a few minutes per script on a 2-core CPU
    python benchmarks/run_all.py                               # the full versions (long on a CPU)

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

from _common import BENCHMARKS, machine, write

SCRIPTS = ["ar_decoding", "end_to_end", "batched", "nar", "training"]


def run_script(name: str, quick: bool, extra: list[str], threads: int | None) -> dict:
    if threads:
        extra = [*extra, "--threads", str(threads)]
    results = os.path.join(BENCHMARKS, "results")
    if name == "ar_decoding":  # the lead's script: one config per call, no --quick
        parts = []
        for config in ("paper", "small"):
            out = os.path.join(results, f"ar_decoding_{config}{'_quick' if quick else ''}.json")
            command = [sys.executable, os.path.join(BENCHMARKS, "ar_decoding.py"), "--config", config, "--out", out]
            if quick:
                command += ["--seconds", "2", "--recompute-samples", "3"]
            if threads:
                command += ["--threads", str(threads)]
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
    rows = {}
    for part in combined.get("ar_decoding", {}).get("per_config", []):
        for run in part["runs"]:
            rows[f"ar_{run['config']}_{run['dtype']}_cached_over_floor"] = run["cached_over_floor"]
    for run in combined.get("end_to_end", {}).get("runs", []):
        rows[f"end_to_end_{run['config']}_speedup"] = run["speedup_end_to_end"]
        rows[f"end_to_end_{run['config']}_rtf"] = run["ours"]["rtf"]
    for run in combined.get("batched", {}).get("runs", []):
        for row in run["rows"]:
            if row["batch"] == 16:
                rows[f"batched_{run['config']}_batch16_vs_batch1"] = row["throughput_vs_batch1"]
    for run in combined.get("nar", {}).get("runs", []):
        rows[f"nar_{run['config']}_over_gemm_floor"] = run["nar_over_floor"]
    for run in combined.get("training", {}).get("runs", []):
        rows[f"training_{run['config']}_acoustic_tokens_per_s"] = run["acoustic_tokens_per_s_forward_backward"]
    targets = {
        "ar_cached_over_floor": "<= 1.3",
        "end_to_end_speedup": ">= 20",
        "batched_batch16_vs_batch1": ">= 8",
        "nar_over_gemm_floor": "<= 2",
    }
    return {"values": rows, "targets": targets}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, default=SCRIPTS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in every script (default: torch's)")
    parser.add_argument("--out", default=None)
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    combined = {"quick": args.quick, "threads_option": args.threads, "machine": machine()}
    for name in args.only:
        start = time.perf_counter()
        combined[name] = run_script(name, args.quick, extra, args.threads)
        combined[name]["script_wall_s"] = time.perf_counter() - start
        print(f"== {name} done in {combined[name]['script_wall_s']:.0f} s", flush=True)
    combined["summary"] = summary(combined)
    write(combined, "all", args.out)


if __name__ == "__main__":
    main()
