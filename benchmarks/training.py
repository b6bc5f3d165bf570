"""Training speed: acoustic tokens per second for a forward + backward step (and the AdamW update), and peak memory.

A step is `model(input_ids, labels=codes)` (both losses: the AR on codebook 1 and one NAR stage, with the NAR's
in-utterance prompt as in `valle train`), `loss.backward()`, then `AdamW.step()`, in fp32 on the CPU.
Acoustic tokens = frames x 8 codebooks of the batch's labels (the EnCodec tokens the step trains on); frames per
second are reported too.

Peak memory: tracemalloc does not see torch's allocations, so each config runs in a fresh child process and
memory is its resident set size: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (the process's high-water mark)
after the first training step, minus the RSS just before it (model and optimizer built, no Adam state yet).
That delta is the step's peak working memory (activations kept for backward, gradients, the Adam state the
first step creates) above the resident weights. A fresh process is needed because the high-water mark never
goes down.

    python benchmarks/training.py --quick
    python benchmarks/training.py --configs paper --batch-size 4 --seconds 10

Writes `benchmarks/results/training.json` (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from _common import CONFIGS, add_common_arguments, build_model, machine, write


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(config_name: str, batch: int, frames: int, phonemes: int, steps: int) -> dict:
    model = build_model(config_name).train()
    config = model.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, config.vocab_size, (batch, phonemes), generator=generator)
    labels = torch.randint(0, config.codebook_size, (batch, frames, config.num_codebooks), generator=generator)

    def step() -> tuple[float, float]:
        start = time.perf_counter()
        output = model(input_ids, labels=labels, nar_stage=1 + step.count % (config.num_codebooks - 1))
        output.loss.backward()
        middle = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step.count += 1
        return middle - start, time.perf_counter() - middle

    step.count = 0
    rss_before, max_before = current_rss_bytes(), max_rss_bytes()
    first_forward_backward, first_update = step()
    peak = max_rss_bytes()
    times = [step() for _ in range(steps)]
    forward_backward = min(t[0] for t in times)
    update = min(t[1] for t in times)
    tokens = batch * frames * config.num_codebooks
    return {
        "config": config_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": batch,
        "frames_per_item": frames,
        "phonemes_per_item": phonemes,
        "acoustic_tokens_per_step": tokens,
        "timed_steps": steps,
        "forward_backward_s": forward_backward,
        "optimizer_step_s": update,
        "acoustic_tokens_per_s_forward_backward": tokens / forward_backward,
        "acoustic_tokens_per_s_with_update": tokens / (forward_backward + update),
        "frames_per_s_forward_backward": batch * frames / forward_backward,
        "first_step_s": first_forward_backward + first_update,
        "memory": {
            "method": "resource.getrusage ru_maxrss after the first step minus /proc/self/statm RSS before it, in a "
            "fresh process per config",
            "rss_before_step_MB": rss_before / 2**20,
            "max_rss_before_step_MB": max_before / 2**20,
            "peak_rss_MB": peak / 2**20,
            "step_peak_above_resident_MB": (peak - rss_before) / 2**20,
            "weights_MB": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
            "note": "if max_rss_before_step exceeds peak_rss, building the model peaked higher than the step and "
            "the delta is a lower bound",
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 (paper) / 8 (small); quick 2 / 8")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per utterance (default 10, quick 5)")
    parser.add_argument("--phonemes", type=int, default=None, help="default 150, quick 75")
    parser.add_argument("--steps", type=int, default=None, help="timed steps after the first (default 3, quick 1)")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    phonemes = args.phonemes or (75 if args.quick else 150)
    steps = args.steps or (1 if args.quick else 3)
    if args._child:
        frames = int(seconds * 75)
        print("RESULT " + json.dumps(child(args._child, args.batch_size, frames, phonemes, steps)), flush=True)
        return None

    results = {
        "benchmark": "training_step",
        "quick": args.quick,
        "machine": machine(),
        "step": "forward (AR loss + one NAR stage) + backward, then AdamW.step; fp32, dropout on",
        "runs": [],
    }
    for name in args.configs:
        batch = args.batch_size or {"paper": 2 if args.quick else 4}.get(name, 8)
        command = [sys.executable, os.path.abspath(__file__), "--_child", name, "--batch-size", str(batch),
                   "--seconds", str(seconds), "--phonemes", str(phonemes), "--steps", str(steps)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        run = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
        results["runs"].append(run)
        print(
            f"[{name}] batch {batch} x {int(seconds * 75)} frames: {run['acoustic_tokens_per_s_forward_backward']:.0f} "
            f"acoustic tokens/s fwd+bwd ({run['forward_backward_s']:.2f} s; AdamW {run['optimizer_step_s']:.2f} s) | "
            f"step peak {run['memory']['step_peak_above_resident_MB']:.0f} MB above resident "
            f"(peak RSS {run['memory']['peak_rss_MB']:.0f} MB)",
            flush=True,
        )
    return write(results, "training", args.out)


if __name__ == "__main__":
    main()
