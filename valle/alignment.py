"""Has the AR learned to read its text? Text-to-audio attention statistics of each AR head.

An autoregressive TTS model can only say the right words once some of its attention heads follow the phonemes
in order, frame after frame, as the speech goes on: a near-diagonal map from audio frames to phonemes. Such
heads show up, teacher-forced, well before free-running output becomes intelligible (sampling errors compound
over hundreds of frames), so they are the early sign that a training run is on its way. For every AR head this
module measures, on recordings with their transcripts:

- `text_mass`: the share of the head's attention (from each audio frame) that goes to the phonemes at all;
- `monotonicity`: the correlation between the frame index and the phoneme position the head looks at (the
  attention-weighted mean position over the phonemes): 1 when it reads the text in order, ~0 when it does not;
- `sharpness`: the mean largest weight on a single phoneme (attention renormalised over the phonemes): 1 for a
  one-hot alignment, 1/num_phonemes for a uniform one.

A head counts as an *alignment head* when `monotonicity >= 0.9` and `text_mass >= 0.5`.

Free-running, `free_running_reading` follows one such head while the AR samples: where in the target text it
reads at each generated frame, so one sees whether the AR walks through the whole text before it stops, stalls,
or never leaves the prompt's transcript.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from transformers import AttentionInterface

MONOTONICITY_THRESHOLD = 0.9
TEXT_MASS_THRESHOLD = 0.5
_RECORDER_NAME = "valle_alignment_recorder"
_active_records: list[dict] = []


def _recording_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention that also hands its weights to the active `record_attention` context."""
    from modeling_valle import eager_attention_forward

    output, weights = eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    if _active_records:
        _active_records[-1].setdefault(module, []).append(weights.detach())
    return output, weights


@contextlib.contextmanager
def record_attention(model) -> Iterator[dict]:
    """Within the block, `model` attends eagerly and every attention module's weights (batch, heads, queries,
    keys) are appended to the yielded dict under that module. The model's attention implementation is put back
    afterwards."""
    AttentionInterface.register(_RECORDER_NAME, _recording_attention)
    previous = model.config._attn_implementation
    records: dict = {}
    model.set_attn_implementation(_RECORDER_NAME)
    _active_records.append(records)
    try:
        yield records
    finally:
        _active_records.remove(records)
        model.set_attn_implementation(previous)


def evenly_spaced(dataset, count: int):
    """At most `count` rows of a `datasets.Dataset`, spread evenly over it."""
    step = max(1, len(dataset) // count)
    return dataset.select(range(0, len(dataset), step)[:count])


def _reading(text_attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From attention on the phonemes (..., num_phonemes): its total (the text's share), the attention renormalised
    over the phonemes, and the phoneme position read (the renormalised attention's mean position)."""
    text_attention = text_attention.double()
    mass = text_attention.sum(dim=-1)
    reading = text_attention / mass.clamp_min(1e-12)[..., None]
    positions = torch.arange(reading.shape[-1], dtype=reading.dtype, device=reading.device)
    return mass, reading, (reading * positions).sum(dim=-1)


def _head_statistics(weights: torch.Tensor, num_phonemes: int, num_frames: int) -> torch.Tensor:
    """(heads, 3): text_mass, monotonicity, sharpness of one item's AR attention (heads, queries, keys), laid out
    as (phonemes, audio BOS?, frames...): the queries are the last `num_frames` audio positions."""
    total = weights.shape[-1]
    mass, reading, position = _reading(weights[:, total - num_frames : total, :num_phonemes])  # (heads, frames)
    time = torch.arange(num_frames, dtype=reading.dtype)
    centred_position = position - position.mean(dim=-1, keepdim=True)
    centred_time = time - time.mean()
    spread = (centred_position.pow(2).sum(dim=-1) * centred_time.pow(2).sum()).sqrt()
    monotonicity = (centred_position * centred_time).sum(dim=-1) / spread.clamp_min(1e-12)
    sharpness = reading.max(dim=-1).values.mean(dim=-1)
    return torch.stack([mass.mean(dim=-1), monotonicity, sharpness], dim=-1).float()


@torch.no_grad()
def ar_alignment(model, examples: Iterable[dict]) -> dict:
    """Attention statistics of each AR head, averaged over `examples`: dicts with `input_ids` (phoneme ids, as
    `valle prepare` stores them) and `codes` (frames x codebooks). Teacher-forced, one example at a time.

    Returns `{"examples": n, "heads": [{"layer", "head", "text_mass", "monotonicity", "sharpness",
    "alignment_head"}, ...], "alignment_heads": k, "best": <the head with the highest monotonicity x text_mass>}`.
    """
    if model.config.ar_loss_weight <= 0:
        raise ValueError("ar_alignment: this model's config has ar_loss_weight=0, so its forward skips the AR "
                         "decoder; set model.config.ar_loss_weight = 1.0 first (the AR weights are read, not "
                         "changed).")
    ar_modules = {layer.self_attn: index for index, layer in enumerate(model.ar_decoder.layers)}
    num_layers, num_heads = len(ar_modules), model.ar_decoder.layers[0].self_attn.num_heads
    device = next(model.parameters()).device
    was_training, nar_loss_weight = model.training, model.config.nar_loss_weight
    model.eval()
    model.config.nar_loss_weight = 0.0  # forward then runs the AR alone: the NAR's attention is not wanted here
    totals = torch.zeros(num_layers, num_heads, 3)
    count = 0
    try:
        with record_attention(model) as records:
            for example in examples:
                input_ids = torch.as_tensor(example["input_ids"], dtype=torch.long, device=device)[None]
                codes = torch.as_tensor(example["codes"], dtype=torch.long, device=device)[None]
                if codes.shape[1] < 2:
                    continue  # one frame has no order to follow
                records.clear()
                model(input_ids=input_ids, labels=codes)
                for module, index in ar_modules.items():
                    (weights,) = records[module]
                    totals[index] += _head_statistics(weights[0].cpu(), input_ids.shape[1], codes.shape[1])
                count += 1
    finally:
        model.config.nar_loss_weight = nar_loss_weight
        model.train(was_training)
    if count == 0:
        raise ValueError("ar_alignment: no example with at least 2 frames of codes.")
    means = totals / count
    heads = []
    for layer in range(num_layers):
        for head in range(num_heads):
            text_mass, monotonicity, sharpness = (round(float(v), 4) for v in means[layer, head])
            heads.append({
                "layer": layer, "head": head, "text_mass": text_mass, "monotonicity": monotonicity,
                "sharpness": sharpness,
                "alignment_head": monotonicity >= MONOTONICITY_THRESHOLD and text_mass >= TEXT_MASS_THRESHOLD,
            })
    best = max(heads, key=lambda h: h["monotonicity"] * h["text_mass"])
    return {"examples": count, "heads": heads, "alignment_heads": sum(h["alignment_head"] for h in heads),
            "best": best}


@torch.no_grad()
def free_running_reading(model, processor, text: str, layer: int, head: int, prompt_audio=None,
                         prompt_text: str | None = None, sampling_rate: int | None = None,
                         **generate_kwargs) -> dict:
    """Generates codebook 1 of `text` with the AR (VALL-E mode with `prompt_audio` and its `prompt_text`, or no
    prompt) and follows AR head (`layer`, `head`) as it goes: at each decoding step, the attention-weighted mean
    position over the phonemes, rescaled to the target text (0: its first phoneme, 1: its end-of-text token;
    below 0: still in the prompt's transcript). `generate_kwargs` go to `generate_ar` (sampling options, seed
    them with `torch.manual_seed`).

    Returns `{"positions": [one per decoding step, the last one the step that ended], "final": the mean of
    the last tenth, "frames": generated frames, "finished_with_eos": bool}`.
    """
    num_layers, num_heads = len(model.ar_decoder.layers), model.ar_decoder.layers[0].self_attn.num_heads
    if not (0 <= layer < num_layers and 0 <= head < num_heads):
        raise ValueError(f"free_running_reading: the AR has layers 0-{num_layers - 1} and heads 0-{num_heads - 1}, "
                         f"got layer {layer}, head {head}.")
    if (prompt_audio is None) != (prompt_text is None):
        raise ValueError("free_running_reading: pass both prompt_audio and its transcript prompt_text, or neither.")
    device = next(model.parameters()).device
    inputs = processor(text=[text], prompt_audio=prompt_audio,
                       prompt_text=None if prompt_text is None else [prompt_text],
                       sampling_rate=sampling_rate).to(device)
    num_phonemes = inputs["input_ids"].shape[1]
    # The text alone is (BOS, its phonemes, EOS); after a prompt's transcript it is the end of the sequence minus BOS.
    target_start = num_phonemes - (len(processor(text=[text])["input_ids"][0]) - 1)
    span = max(1, num_phonemes - 1 - target_start)
    was_training = model.training
    model.eval()
    try:
        with record_attention(model) as records:
            output = model.generate_ar(**inputs, return_dict_in_generate=True, **generate_kwargs)
    finally:
        model.train(was_training)
    # One call per decoding step; its last query wrote the step's frame.
    calls = records[model.ar_decoder.layers[layer].self_attn]
    steps = torch.stack([weights[0, head, -1, :num_phonemes] for weights in calls])
    positions = [round((float(position) - target_start) / span, 4) for position in _reading(steps)[2]]
    tail = positions[-max(1, len(positions) // 10) :]
    return {"positions": positions, "final": round(sum(tail) / len(tail), 4),
            "frames": int(output.sequence_lengths[0]), "finished_with_eos": bool(output.finished_with_eos[0])}


def markdown_table(result: dict) -> str:
    """One row per AR layer, one `mass / monotonicity / sharpness` cell per head; alignment heads in bold."""
    num_heads = 1 + max(h["head"] for h in result["heads"])
    lines = ["| layer | " + " | ".join(f"head {h}" for h in range(num_heads)) + " |",
             "|---|" + "---|" * num_heads]
    for layer in range(1 + max(h["layer"] for h in result["heads"])):
        cells = []
        for h in (h for h in result["heads"] if h["layer"] == layer):
            cell = f"{h['text_mass']:.2f} / {h['monotonicity']:+.2f} / {h['sharpness']:.2f}"
            cells.append(f"**{cell}**" if h["alignment_head"] else cell)
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    best = result["best"]
    lines.append("")
    lines.append(f"Cells: text mass / monotonicity / sharpness, over {result['examples']} examples; "
                 f"{result['alignment_heads']} alignment head(s) (bold: monotonicity >= {MONOTONICITY_THRESHOLD}, "
                 f"text mass >= {TEXT_MASS_THRESHOLD}); best: layer {best['layer']} head {best['head']}.")
    return "\n".join(lines)
