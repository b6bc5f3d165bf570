"""The NAR's 7 greedy passes (codebooks 2..8) against the matrix-multiply floor.

Scenario: 150 phonemes, a 3 s prompt (225 frames, all 8 codebooks) and 10 s of target (750 frames) whose first
codebook the AR produced. Each pass is a bidirectional decoder forward over phonemes + prompt + target, so its
cost is dominated by matrix multiplies: the floor is `FLOPs of the passes / GEMM rate`, with the GEMM rate of a
large square `torch.matmul` measured in the same run. FLOPs counted: the q/k/v/o projections, the feed-forward,
QK^T and weights*V of every layer, and the prediction layer over the audio positions (what the code computes).
One pass is also profiled (top operators by self CPU time) to show where the time goes.

    python benchmarks/nar.py              # paper-size and small configs
    python benchmarks/nar.py --quick      # one timed run per config

Writes `benchmarks/results/nar.json` (or --out).
"""

from __future__ import annotations

import argparse

import torch

from _common import (
    add_common_arguments, best_seconds, build_model, decoder_matmul_flops, gemm_rate, machine, profile_top_ops, write,
)
from ar_decoding import make_inputs


def nar_flops(model, batch: int, phonemes: int, prompt_frames: int, frames: int) -> int:
    config = model.config
    sizes = config.nar_sizes
    length = phonemes + prompt_frames + frames
    per_pass = decoder_matmul_flops(sizes, batch, length)
    per_pass += 2 * batch * (prompt_frames + frames) * sizes["hidden_size"] * config.codebook_size  # head
    return (config.num_codebooks - 1) * per_pass


def time_nar(model, input_ids, prompt, first_codebook, repeats: int) -> float:
    phoneme_mask = torch.ones_like(input_ids, dtype=torch.bool)
    prompt_mask = torch.ones(prompt.shape[:2], dtype=torch.bool)
    lengths = torch.full((input_ids.shape[0],), first_codebook.shape[1])
    return best_seconds(
        lambda: model._generate_other_codebooks(
            input_ids, phoneme_mask, None, prompt, prompt_mask, first_codebook, lengths
        ),
        repeats,
    )


def profile_one_pass(model, input_ids, prompt, first_codebook, top: int = 8) -> list[dict]:
    phoneme_mask = torch.ones_like(input_ids, dtype=torch.bool)
    phonemes = model._embed_phonemes("nar", input_ids, phoneme_mask, None)
    embeds = torch.cat(
        [model._nar_embed_codes(prompt, model.config.num_codebooks), model.nar_audio_embeddings[0](first_codebook)], dim=1
    )
    audio_mask = torch.ones(embeds.shape[:2], dtype=torch.bool)
    return profile_top_ops(lambda: model._nar_forward(phonemes, phoneme_mask, embeds, audio_mask, 1), top)


def benchmark(config_name: str, args) -> dict:
    model = build_model(config_name)
    config = model.config
    prompt_frames = int(args.prompt_seconds * config.frame_rate)
    frames = int(args.seconds * config.frame_rate)
    input_ids, prompt = make_inputs(config, args.phonemes, prompt_frames)
    generator = torch.Generator().manual_seed(2)
    first_codebook = torch.randint(0, config.codebook_size, (1, frames), generator=generator)
    with torch.inference_mode():
        time_nar(model, input_ids, prompt, first_codebook[:, :16], 1)  # warm-up (short)
        seconds = time_nar(model, input_ids, prompt, first_codebook, 1 if args.quick else 3)
        profile = profile_one_pass(model, input_ids, prompt, first_codebook)
    rate = gemm_rate()
    flops = nar_flops(model, 1, args.phonemes, prompt_frames, frames)
    floor = flops / rate
    run = {
        "config": config_name,
        "nar_parameters": sum(p.numel() for p in model.nar_decoder.parameters()),
        "phonemes": args.phonemes,
        "prompt_frames": prompt_frames,
        "target_frames": frames,
        "passes": config.num_codebooks - 1,
        "nar_seconds": seconds,
        "nar_ms_per_pass": 1000 * seconds / (config.num_codebooks - 1),
        "flops": flops,
        "gemm_GFLOPs_measured": rate / 1e9,
        "achieved_GFLOPs": flops / seconds / 1e9,
        "gemm_floor_seconds": floor,
        "nar_over_floor": seconds / floor,
        "profile_one_pass_top_ops": profile,
        "target": {"nar_over_floor_at_most": 2.0},
    }
    print(
        f"[{config_name}] NAR 7 passes {seconds:.2f} s | floor {floor:.2f} s at {rate / 1e9:.0f} GFLOP/s "
        f"-> {run['nar_over_floor']:.2f}x floor",
        flush=True,
    )
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--phonemes", type=int, default=150)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"benchmark": "nar_passes_vs_gemm_floor", "quick": args.quick, "machine": machine(), "runs": []}
    for name in args.configs:
        results["runs"].append(benchmark(name, args))
    return write(results, "nar", args.out)


if __name__ == "__main__":
    main()
