"""AR decoding speed at batch size 1: KV-cached steps vs full recomputation vs the memory-bandwidth floor.

The scenario of the paper's zero-shot use: a 3 s voice prompt (225 frames) with its transcript, then 10 s
of new speech (750 AR steps). One AR step at batch 1 must read every weight of the AR decoder and its
prediction layer once, so no implementation can beat `weight bytes / memory bandwidth`; the bandwidth is
measured in the same run (a large tensor copy, read + write bytes), because machines are noisy.

Full recomputation (no KV cache: how the popular open implementations decode) costs a whole forward over a
growing sequence per step. At the paper's size on a CPU a full run of it takes tens of minutes, so by default
its per-step time is measured at `--recompute-samples` evenly spaced points of the trajectory and averaged
with the trapezoid rule (the cost is close to linear in the length); `--full-recompute` runs all steps.

    python benchmarks/ar_decoding.py                       # paper-size config, fp32 and bf16
    python benchmarks/ar_decoding.py --config small --out benchmarks/results/ar_decoding_small.json

Writes JSON (default `benchmarks/results/ar_decoding_<config>.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configuration_valle import VallEConfig  # noqa: E402
from modeling_valle import VallEForConditionalCodecGeneration  # noqa: E402


CONFIGS = {
    "paper": {},
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024),
}


def machine() -> dict:
    """What the numbers depend on, including how busy the machine was (other jobs share these cores)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "niceness": os.nice(0),
        "loadavg_at_start": list(os.getloadavg()),
    }


def best_seconds(run, repeats: int) -> float:
    """The fastest of `repeats` timed calls of `run()`: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def copy_bandwidth(megabytes: int = 512, repeats: int = 8) -> float:
    """Best observed copy bandwidth in bytes/s, counting the bytes read and the bytes written."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    return 2 * source.numel() * source.element_size() / best_seconds(lambda: target.copy_(source), repeats)


def read_bandwidth(megabytes: int = 512, repeats: int = 8) -> float:
    """Best observed read-only bandwidth in bytes/s (a reduction over a large buffer): what a weight-streaming
    GEMV can hope for, since it reads and hardly writes."""
    source = torch.ones(megabytes * 2**20 // 4)
    return source.numel() * source.element_size() / best_seconds(source.sum, repeats)


def weight_bytes_per_step(model: VallEForConditionalCodecGeneration) -> int:
    """Bytes of the weights one cached AR step must read: the decoder, the prediction layer (or the audio
    embedding it shares) and one row of the audio embedding (negligible, counted as a row)."""
    decoder = sum(p.numel() * p.element_size() for p in model.ar_decoder.parameters())
    head = model.ar_lm_head.weight if model.ar_lm_head is not None else model.ar_audio_embedding.weight
    row = model.ar_audio_embedding.weight[0]
    return decoder + head.numel() * head.element_size() + row.numel() * row.element_size()


def kv_bytes_at(model, length: int, dtype: torch.dtype) -> int:
    config = model.config
    return 2 * config.num_hidden_layers * length * config.hidden_size * torch.finfo(dtype).bits // 8


def make_inputs(config: VallEConfig, num_phonemes: int, prompt_frames: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, config.vocab_size, (1, num_phonemes), generator=generator)
    prompt = torch.randint(0, config.codebook_size, (1, prompt_frames, config.num_codebooks), generator=generator)
    return input_ids, prompt


def time_cached_decoding(model, input_ids, prompt, steps: int) -> dict:
    """Runs the real AR decoding loop (sampling, EOS forbidden until `steps`) and separates the prefill."""
    options = model._generation_options(None, dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=True))
    phoneme_mask = torch.ones_like(input_ids, dtype=torch.bool)
    prompt_mask = torch.ones(prompt.shape[:2], dtype=torch.bool)
    # Prefill alone (same work as the first part of the loop).
    one = model._generation_options(None, dict(max_new_tokens=1, min_new_tokens=1, do_sample=True))
    start = time.perf_counter()
    model._generate_first_codebook(input_ids, phoneme_mask, None, prompt, prompt_mask, one)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    codes, lengths, *_ = model._generate_first_codebook(input_ids, phoneme_mask, None, prompt, prompt_mask, options)
    total = time.perf_counter() - start
    assert int(lengths[0]) == steps
    return {"prefill_s": prefill, "total_s": total, "ms_per_step": 1000 * (total - prefill) / (steps - 1)}


def time_full_forward(model, input_ids, prompt_first_codebook, audio_length: int, repeats: int = 2) -> float:
    """Seconds of one recomputation step: a full AR forward over the phonemes and `audio_length` frames."""
    generator = torch.Generator().manual_seed(1)
    extra = audio_length - prompt_first_codebook.shape[1]
    audio = torch.cat(
        [prompt_first_codebook, torch.randint(0, model.config.codebook_size, (1, extra), generator=generator)], dim=1
    )
    phoneme_mask = torch.ones_like(input_ids, dtype=torch.bool)
    audio_mask = torch.ones_like(audio, dtype=torch.bool)

    def step():
        phonemes = model._embed_phonemes("ar", input_ids, phoneme_mask, None)
        hidden = model._ar_forward(phonemes, phoneme_mask, audio, audio_mask)
        model._ar_logits(hidden[:, -1])

    return best_seconds(step, repeats)


def benchmark(config_name: str, dtype_name: str, args) -> dict:
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    config = VallEConfig(**CONFIGS[config_name])
    torch.manual_seed(0)
    model = VallEForConditionalCodecGeneration(config).eval().to(dtype)
    steps = int(args.seconds * config.frame_rate)
    prompt_frames = int(args.prompt_seconds * config.frame_rate)
    input_ids, prompt = make_inputs(config, args.phonemes, prompt_frames)

    with torch.inference_mode():
        time_cached_decoding(model, input_ids, prompt, 8)  # warm-up
        cached = time_cached_decoding(model, input_ids, prompt, steps)
        if args.full_recompute:
            options = model._generation_options(
                None, dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=True, use_cache=False)
            )
            start = time.perf_counter()
            model._generate_first_codebook(
                input_ids, torch.ones_like(input_ids, dtype=torch.bool), None, prompt,
                torch.ones(prompt.shape[:2], dtype=torch.bool), options,
            )
            recompute_ms = 1000 * (time.perf_counter() - start) / steps
            samples = None
        else:
            points = [prompt_frames + round(i * (steps - 1) / (args.recompute_samples - 1)) for i in range(args.recompute_samples)]
            samples = {str(p): 1000 * time_full_forward(model, input_ids, prompt[..., 0], p) for p in points}
            values = list(samples.values())
            recompute_ms = sum((a + b) / 2 for a, b in zip(values, values[1:])) / (len(values) - 1)

    bandwidth = copy_bandwidth()
    reading = read_bandwidth()
    weights = weight_bytes_per_step(model)
    floor_ms = 1000 * weights / bandwidth
    read_floor_ms = 1000 * weights / reading
    mean_kv = kv_bytes_at(model, args.phonemes + prompt_frames + steps // 2, dtype)
    return {
        "config": config_name,
        "dtype": dtype_name,
        "ar_parameters": sum(p.numel() for p in model.ar_decoder.parameters()),
        "steps": steps,
        "prompt_frames": prompt_frames,
        "phonemes": args.phonemes,
        "cached_ms_per_step": cached["ms_per_step"],
        "cached_prefill_ms": 1000 * cached["prefill_s"],
        "recompute_ms_per_step": recompute_ms,
        "recompute_method": "full run" if samples is None else f"trapezoid over {len(samples)} sampled steps",
        "recompute_samples_ms": samples,
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "weight_bytes_per_step": weights,
        "bandwidth_floor_ms": floor_ms,
        "read_bandwidth_GBps": reading / 1e9,
        "read_bandwidth_floor_ms": read_floor_ms,
        "cached_over_read_floor": cached["ms_per_step"] / read_floor_ms,
        "floor_with_mean_kv_cache_ms": 1000 * (weights + mean_kv) / bandwidth,
        "speedup_cached_vs_recompute": recompute_ms / cached["ms_per_step"],
        "cached_over_floor": cached["ms_per_step"] / floor_ms,
        "targets": {"speedup_at_least": 10.0, "cached_over_floor_at_most_fp32": 1.5},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="paper")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of speech to generate (75 steps/s)")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--phonemes", type=int, default=150, help="prompt transcript + target phonemes")
    parser.add_argument("--recompute-samples", type=int, default=4)
    parser.add_argument("--full-recompute", action="store_true", help="time every recomputation step (slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results = {"benchmark": "ar_decoding_batch1", "machine": machine(), "runs": []}
    for dtype_name in args.dtypes:
        run = benchmark(args.config, dtype_name, args)
        results["runs"].append(run)
        print(
            f"[{args.config} {dtype_name}] cached {run['cached_ms_per_step']:.1f} ms/step | recompute "
            f"{run['recompute_ms_per_step']:.1f} ms/step ({run['speedup_cached_vs_recompute']:.1f}x) | floor "
            f"{run['bandwidth_floor_ms']:.1f} ms ({run['cached_over_floor']:.2f}x floor, "
            f"{run['copy_bandwidth_GBps']:.1f} GB/s)",
            flush=True,
        )
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"ar_decoding_{args.config}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
