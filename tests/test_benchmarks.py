"""The benchmark scripts' own helpers (not the benchmarks themselves): the step-by-step AR stepper they profile
and compare must decode exactly as the model's loop does, and the summary must judge the issue's targets."""

import os
import sys

import torch

from tests.utils import tiny_valle_config

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import ar_decoding  # noqa: E402
import run_all  # noqa: E402


def _tiny_model_and_inputs():
    from modeling_valle import VallEForConditionalCodecGeneration

    config = tiny_valle_config()
    model = VallEForConditionalCodecGeneration(config).eval()
    input_ids, prompt = ar_decoding.make_inputs(config, num_phonemes=6, prompt_frames=5)
    return model, input_ids, prompt


def test_cached_stepper_decodes_as_the_model_loop():
    steps = 6
    model, input_ids, prompt = _tiny_model_and_inputs()
    eos = model.config.audio_eos_token_id
    with torch.inference_mode():
        options = model._generation_options(None, dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=False))
        codes, *_ = model._generate_first_codebook(
            input_ids, torch.ones_like(input_ids, dtype=torch.bool), None, prompt,
            torch.ones(prompt.shape[:2], dtype=torch.bool), options,
        )
        stepper = ar_decoding.CachedStepper(model, input_ids, prompt, room=steps)
        tokens = []
        for step in range(steps):
            logits = stepper.logits.float().clone()
            logits[:, eos] = -float("inf")  # the loop forbids EOS before min_new_tokens
            tokens.append(logits.argmax(dim=-1))
            if step + 1 < steps:
                stepper(tokens[-1])
    assert torch.equal(torch.stack(tokens, dim=1), codes)


def test_static_buffers_match_the_eager_loop_and_bf16_agreement_is_reported():
    model, input_ids, prompt = _tiny_model_and_inputs()
    with torch.inference_mode():
        trial = ar_decoding.compile_trial(model, input_ids, prompt, steps=5, modes=[])
        agreement = ar_decoding.bf16_agreement(model, input_ids, prompt, steps=5)
    assert trial["eager_static_buffers"]["max_abs_logit_diff_vs_eager_loop"] < 1e-4
    assert agreement["compared_predictions"] == 6
    assert 0.0 <= agreement["greedy_next_token_agreement"] <= 1.0


def test_summary_judges_each_target_per_config():
    combined = {
        "ar_decoding": {"per_config": [{"runs": [
            {"config": "small", "dtype": "fp32", "cached_over_floor": 1.2, "steps": 150},
            {"config": "small", "dtype": "bf16", "cached_over_floor": 1.4, "steps": 150},
        ]}]},
        "end_to_end": {"runs": [{"config": "small", "speedup_end_to_end": 25.0, "ours": {"rtf": 0.5},
                                 "audio_seconds": 10.0}]},
        "batched": {"runs": [{"config": "small", "frames_per_item": 75,
                              "rows": [{"batch": 1, "throughput_vs_batch1": 1.0},
                                       {"batch": 16, "throughput_vs_batch1": 7.9}]}]},
        "nar": {"runs": [{"config": "small", "nar_over_floor": 2.0}]},
    }
    summary = run_all.summary(combined)
    targets = summary["targets"]
    assert targets["ar_cached_step_over_bandwidth_floor_batch1"]["small"]["fp32"]["met"] is True
    assert targets["ar_cached_step_over_bandwidth_floor_batch1"]["small"]["bf16"]["met"] is False
    assert targets["end_to_end_speedup_vs_naive_10s"]["small"]["met"] is True
    assert targets["batch16_over_batch1_audio_throughput"]["small"]["met"] is False
    assert targets["nar_over_gemm_floor"]["small"] == {"value": 2.0, "target": "<= 2", "met": True}
    assert (summary["targets_met"], summary["targets_checked"], summary["all_met"]) == (3, 5, False)
