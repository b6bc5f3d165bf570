"""Small, committable copies of the lab's trained models (fp16 weights, float32 on load)."""

from __future__ import annotations

import json
import os
import shutil


def save_fp16(model, folder: str) -> int:
    """`save_pretrained` with float16 weights (half the bytes) and a config that loads them as float32.

    CPU users get float32 modules by default (`from_pretrained` follows the config's dtype);
    returns the size of the weights file in bytes.
    """
    import torch

    original_dtype = next(model.parameters()).dtype
    model.to(torch.float16).save_pretrained(folder)
    model.to(original_dtype)
    config_path = os.path.join(folder, "config.json")
    with open(config_path) as handle:
        config = json.load(handle)
    config["dtype"] = "float32"
    with open(config_path, "w") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
    return os.path.getsize(os.path.join(folder, "model.safetensors"))


def trained_codec_dir(lab_dir: str) -> str:
    """The lab codec to use: the decoder-only stage's (`codec_decoder/`: same codes, better audio) when it ran,
    else the codec's."""
    finetuned = os.path.join(lab_dir, "codec_decoder")
    if os.path.isfile(os.path.join(finetuned, "model", "config.json")):
        return os.path.join(finetuned, "model")
    return os.path.join(lab_dir, "codec", "model")


def publish(lab_dir: str, destination: str) -> dict:
    """Copy the trained codec (scale-free export) and judge from `lab_dir` to `destination` as fp16 folders."""
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    from .codec import load_for_processor

    codec_dir = os.path.dirname(trained_codec_dir(lab_dir))
    judge_dir = os.path.join(lab_dir, "judge", "model")
    for needed in (os.path.join(codec_dir, "model"), judge_dir):
        if not os.path.isfile(os.path.join(needed, "config.json")):
            raise FileNotFoundError(f"publish: {needed} has no trained model; run `valle lab codec` / `valle lab judge` first.")
    codec = load_for_processor(os.path.join(codec_dir, "model"))
    judge = Wav2Vec2ForCTC.from_pretrained(judge_dir).eval()
    processor = Wav2Vec2Processor.from_pretrained(judge_dir)
    for name in ("codec", "judge"):
        shutil.rmtree(os.path.join(destination, name), ignore_errors=True)
    sizes = {
        "codec": save_fp16(codec, os.path.join(destination, "codec")),
        "judge": save_fp16(judge, os.path.join(destination, "judge")),
    }
    processor.save_pretrained(os.path.join(destination, "judge"))
    steps = {}
    for name, checkpoint in (("codec", os.path.join(lab_dir, "codec", "checkpoint.pt")),
                             ("codec_decoder", os.path.join(lab_dir, "codec_decoder", "checkpoint.pt")),
                             ("judge", os.path.join(lab_dir, "judge", "checkpoint.pt"))):
        if os.path.isfile(checkpoint):
            steps[name] = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["step"])
    summary = {"bytes": sizes, "training_steps": steps}
    with open(os.path.join(destination, "published.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    return summary
