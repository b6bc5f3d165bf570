"""The lab's own VALL-E: a processor over the lab codec and a small model config to train with `valle train`.

The recipe (`valle lab tts`, see README "The built-in model") is the project's ordinary tools run on the lab
corpus: `build_lab_processor` -> `valle prepare` -> `valle train` (AR and NAR as two processes sharing the CPU)
-> `merge_decoders` / `assemble_model` -> `build_bundle` (`valle lab bundle`).
"""

from __future__ import annotations

import json
import os
import re

# Small enough to train on two CPU cores in a few hours, shaped like the paper's model otherwise.
LAB_MODEL = {
    "hidden_size": 256,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    # A couple of epochs on 200 speakers: nothing to regularise yet, and dropout slows such short runs down.
    "dropout": 0.0,
    "attention_dropout": 0.0,
    # A begin-of-speech token lets the AR start with no acoustic prompt at all (the paper's ablation).
    "use_audio_bos": True,
    "tie_ar_lm_head": False,
}


def build_lab_processor(corpus_dir: str, codec_dir: str, output_dir: str):
    """A `VallEProcessor` whose phoneme vocabulary is built on the corpus' training transcripts and whose codec
    is the lab codec exported for scale-free use (`valle.lab.codec.export_for_processor`). Saved to `output_dir`."""
    import datasets

    from processing_valle import VallEPhonemeTokenizer

    corpus = datasets.load_from_disk(corpus_dir)
    return _save_processor(VallEPhonemeTokenizer.build_vocab(corpus["train"]["text"]), codec_dir, output_dir)


def _save_processor(tokenizer, codec_dir: str, output_dir: str):
    """`VallEProcessor(tokenizer, the lab codec of codec_dir made scale-free)`, saved with the codec inside."""
    from processing_valle import VallEProcessor

    from .codec import load_for_processor

    processor = VallEProcessor(tokenizer=tokenizer, codec=load_for_processor(codec_dir), codec_name_or_path=None)
    processor.save_pretrained(output_dir)
    return processor


def lab_model_config(processor, **overrides):
    """The lab model's `VallEConfig` (write it with `to_json_file` and give it to `valle train --model`)."""
    from configuration_valle import VallEConfig

    tokenizer = processor.tokenizer
    settings = {
        **LAB_MODEL,
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "num_codebooks": processor.num_codebooks,
        "codebook_size": processor.codebook_size,
        "sampling_rate": processor.sampling_rate,
        "frame_rate": int(round(processor.frame_rate)),
        **overrides,
    }
    return VallEConfig(**settings)


def merge_decoders(ar_dir: str, nar_dir: str):
    """One model from two runs of `valle train --mode ar` and `--mode nar` on the same config: the AR decoder's
    weights from the first, the NAR decoder's from the second. The two decoders share no parameter, so the merge
    is exact; raises if the configs differ."""
    from modeling_valle import VallEForConditionalCodecGeneration

    ar_model = VallEForConditionalCodecGeneration.from_pretrained(ar_dir)
    nar_model = VallEForConditionalCodecGeneration.from_pretrained(nar_dir)
    ar_config, nar_config = ar_model.config.to_dict(), nar_model.config.to_dict()
    # `valle train --mode` switches the other decoder's loss weight off: the merged model trains both again.
    own = {"transformers_version", "_name_or_path", "architectures", "ar_loss_weight", "nar_loss_weight"}
    differing = sorted(key for key in set(ar_config) | set(nar_config)
                       if key not in own and ar_config.get(key) != nar_config.get(key))
    if differing:
        raise ValueError(f"merge_decoders: the AR and NAR runs used different configs ({', '.join(differing)}).")
    nar_state = nar_model.state_dict()
    merged = {name: (nar_state[name] if name.startswith("nar_") else value)
              for name, value in ar_model.state_dict().items()}
    ar_model.load_state_dict(merged)
    ar_model.config.ar_loss_weight = ar_config["ar_loss_weight"]
    ar_model.config.nar_loss_weight = nar_config["nar_loss_weight"]
    ar_model.requires_grad_(True)
    return ar_model.eval()


def assemble_model(lab_dir: str, ar_dir: str, nar_dir: str, model_dir: str) -> str:
    """`merge_decoders(ar_dir, nar_dir)` saved to `model_dir` with the recipe's processor (the phoneme vocabulary
    of `lab_dir/tts/processor` and the lab's trained codec, scale-free). Works on `checkpoint-*` folders too."""
    from processing_valle import VallEProcessor

    from .artifacts import trained_codec_dir

    model = merge_decoders(ar_dir, nar_dir)
    model.save_pretrained(model_dir)
    tokenizer = VallEProcessor.from_pretrained(os.path.join(lab_dir, "tts", "processor")).tokenizer
    _save_processor(tokenizer, trained_codec_dir(lab_dir), model_dir)
    return model_dir


# The recipe's training settings (`valle train` options and TrainingArguments), the same for both decoders.
RECIPE = {
    "max_tokens": 3000,
    # ~1.9 s per step for each decoder on one core of the 2-core CPU: ~75 min for the AR, ~50 for the NAR
    # (which needs fewer steps: it learns acoustic detail given codebook 1, not alignment or when to stop).
    "steps": {"ar": 2400, "nar": 1500},
    "learning_rate": 1e-3,
    "warmup_steps": 250,
    "save_steps": 250,
}


def train_command(mode: str, data_dir: str, model: str, processor_dir: str, output_dir: str, seed: int,
                  steps: int, resume: bool, join_same_speaker: float = 0.0,
                  learning_rate: float | None = None) -> list[str]:
    """The `valle train` command line that trains one decoder of the lab model. `model`: a config JSON (a new
    model) or a model folder (go on training it). `learning_rate`: the peak (default `RECIPE["learning_rate"]`)."""
    import sys

    command = [
        sys.executable, "-m", "valle", "train", "--model", model, "--processor", processor_dir,
        "--mode", mode, "--max-tokens", str(RECIPE["max_tokens"]),
    ]
    if join_same_speaker:
        command += ["--join-same-speaker", str(join_same_speaker)]
    if resume:
        command.append("--resume")
    command += [
        data_dir, "--", "--output_dir", output_dir, "--max_steps", str(steps),
        "--learning_rate", str(RECIPE["learning_rate"] if learning_rate is None else learning_rate),
        "--warmup_steps", str(RECIPE["warmup_steps"]),
        "--lr_scheduler_type", "cosine", "--logging_steps", "25", "--save_steps", str(RECIPE["save_steps"]),
        "--save_total_limit", "2", "--dataloader_num_workers", "0", "--seed", str(seed), "--report_to", "none",
    ]
    return command


def has_checkpoint(output_dir: str) -> bool:
    return os.path.isdir(output_dir) and any(name.startswith("checkpoint-") for name in os.listdir(output_dir))


def run_recipe(lab_dir: str, seed: int = 0, steps: dict | None = None, num_proc: int = 2,
               init_from: str | None = None, join_same_speaker: float = 0.0, learning_rate: float | None = None,
               log=print) -> str:
    """Trains the lab VALL-E from the lab corpus and codec; every stage resumes where it stopped.

    `steps`: training steps per decoder, e.g. `{"ar": 2400, "nar": 1500}` (default `RECIPE["steps"]`). With
    `init_from`, 0 steps keeps that decoder of `init_from` as it is (e.g. `{"nar": 0}` trains the AR alone).
    `init_from`: a lab VALL-E folder (e.g. the built-in model) to go on training instead of a new model: its
    phoneme vocabulary and config are kept, the learning-rate schedule starts afresh (warm-up, cosine over
    `steps`). For a larger corpus built with the same seed and speakers (`valle lab corpus --train-utterances`).
    `join_same_speaker`: joined rows per utterance in the AR's data (`valle.data.join_same_speaker`), so that it
    learns VALL-E mode's joint from a prompt into a new sentence; the lab's one-sentence utterances have none.
    `learning_rate`: the peak of the schedule (default `RECIPE["learning_rate"]`), e.g. lower for a last stage
    that goes on from a trained model.
    `lab_dir/tts/`: processor/ -> data/train (`prepare_dataset`) -> config.json -> ar/ and nar/
    (two `valle train` processes at once, the CPU's threads shared out: the decoders share no weight, so training
    them apart is the same as `--mode both` with half the work per process) -> model/ (the merge, with the
    processor). Returns the model folder.
    """
    import subprocess

    from processing_valle import VallEProcessor
    from valle.data import prepare_dataset

    steps = {**RECIPE["steps"], **(steps or {})}
    if any(count < 0 for count in steps.values()):
        raise ValueError(f"run_recipe: steps must be >= 0, got {steps}.")
    if learning_rate is not None and not learning_rate > 0:
        raise ValueError(f"run_recipe: the learning rate must be positive, got {learning_rate}.")
    learning_rate = RECIPE["learning_rate"] if learning_rate is None else learning_rate
    if not any(steps.values()):
        raise ValueError(f"run_recipe: {steps} trains nothing; give --ar-steps or --nar-steps a positive count.")
    if init_from is None and not all(steps.values()):
        raise ValueError(f"run_recipe: {steps} trains no {'AR' if not steps['ar'] else 'NAR'}; 0 steps keeps a "
                         "decoder of --init-from as it is, so it needs --init-from.")
    corpus_dir = os.path.join(lab_dir, "corpus")
    tts_dir = os.path.join(lab_dir, "tts")
    processor_dir = os.path.join(tts_dir, "processor")
    init_tokenizer = None
    if init_from is not None:
        if not os.path.isfile(os.path.join(init_from, "config.json")):
            raise FileNotFoundError(f"run_recipe: init_from={init_from!r} is not a model folder (no config.json).")
        init_tokenizer = VallEProcessor.from_pretrained(init_from).tokenizer
    if not os.path.isfile(os.path.join(processor_dir, "processor_config.json")):
        # The codes come from the codec's encoder; the decoder-only stage leaves the encoder as it is.
        if init_from is None:
            build_lab_processor(corpus_dir, os.path.join(lab_dir, "codec", "model"), processor_dir)
        else:  # the model's own phoneme ids
            _save_processor(init_tokenizer, os.path.join(lab_dir, "codec", "model"), processor_dir)
        log(f"tts: processor in {processor_dir}")
    processor = VallEProcessor.from_pretrained(processor_dir)
    if init_from is not None:
        with open(os.path.join(init_from, "config.json")) as handle:
            model_vocab_size = int(json.load(handle)["vocab_size"])
        own = init_tokenizer.get_vocab()
        if own != processor.tokenizer.get_vocab() or model_vocab_size != len(own):
            raise ValueError(f"run_recipe: the phoneme vocabulary of {processor_dir} is not the one {init_from} was "
                             f"trained with; delete {processor_dir} so that it is rebuilt from the model's own "
                             "tokenizer.")
    report = prepare_dataset(corpus_dir, processor, os.path.join(tts_dir, "data", "train"), split="train",
                             speaker_column="speaker_id", id_column="id", min_seconds=0.5, max_seconds=20.0,
                             num_proc=num_proc, device="cpu")
    log(f"tts: data/train: {report.summary()}")
    config_path = os.path.join(tts_dir, "config.json")
    if init_from is not None:
        record = {"init_from": init_from}
        bundle_record = os.path.join(init_from, "lab_bundle.json")
        if os.path.isfile(bundle_record):  # how the starting model itself was trained
            with open(bundle_record) as handle:
                record["its_training"] = json.load(handle).get("training")
        with open(os.path.join(tts_dir, "init_from.json"), "w") as handle:
            json.dump(record, handle, indent=1)
    elif not os.path.isfile(config_path):
        lab_model_config(processor).to_json_file(config_path)
    with open(os.path.join(tts_dir, "options.json"), "w") as handle:  # for `training_summary`
        json.dump({"steps": steps, "join_same_speaker": join_same_speaker, "seed": seed,
                   "learning_rate": learning_rate}, handle, indent=1)
    runs, trained = {}, [mode for mode in ("ar", "nar") if steps[mode]]
    threads = str(max(1, (os.cpu_count() or 1) // len(trained)))
    for mode in trained:
        output_dir = os.path.join(tts_dir, mode)
        command = train_command(mode, os.path.join(tts_dir, "data", "train"), init_from or config_path, processor_dir,
                                output_dir, seed, steps[mode], resume=has_checkpoint(output_dir),
                                join_same_speaker=join_same_speaker if mode == "ar" else 0.0,
                                learning_rate=learning_rate)
        log(f"tts: training the {mode.upper()} decoder: {' '.join(command)} (log: {output_dir}.log)")
        handle = open(f"{output_dir}.log", "a")
        runs[mode] = (subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                       env={**os.environ, "OMP_NUM_THREADS": threads}), handle)
    failed = []
    for mode, (process, handle) in runs.items():
        if process.wait() != 0:
            failed.append(mode)
        handle.close()
    if failed:
        raise RuntimeError(f"tts: training the {', '.join(failed)} decoder failed; see {tts_dir}/<mode>.log, fix, "
                           "and run the same command again to resume.")
    decoders = {mode: os.path.join(tts_dir, mode) if steps[mode] else init_from for mode in ("ar", "nar")}
    model_dir = assemble_model(lab_dir, decoders["ar"], decoders["nar"], os.path.join(tts_dir, "model"))
    log(f"tts: model in {model_dir}")
    return model_dir


def training_summary(lab_dir: str) -> dict:
    """What the recipe's two trainings did, from their last checkpoints: steps, last logged loss, hours of audio
    seen per decoder; for the card and `lab_bundle.json`."""
    options_path = os.path.join(lab_dir, "tts", "options.json")
    options = {}
    if os.path.isfile(options_path):
        with open(options_path) as handle:
            options = json.load(handle)
    trained = [mode.upper() for mode in ("ar", "nar") if options.get("steps", {}).get(mode) != 0]
    # Runs from before the seed was recorded used the default, 0.
    how = "AR and NAR as two processes sharing the CPU" if len(trained) == 2 else f"the {trained[0]} alone"
    summary = {"recipe": f"valle lab tts --dir {lab_dir} (seed {options.get('seed', 0)}; {how})",
               "max tokens per batch (frames)": RECIPE["max_tokens"],
               "peak learning rate": options.get("learning_rate", RECIPE["learning_rate"]),
               "learning-rate schedule": f"cosine, {RECIPE['warmup_steps']} warm-up steps"}
    init_record = os.path.join(lab_dir, "tts", "init_from.json")
    if os.path.isfile(init_record):
        with open(init_record) as handle:
            record = json.load(handle)
        summary["recipe"] += f", --init-from {record['init_from']}"
        summary["initialised from"] = record
    if options.get("learning_rate", RECIPE["learning_rate"]) != RECIPE["learning_rate"]:
        summary["recipe"] += f", --learning-rate {options['learning_rate']}"
    if options.get("join_same_speaker"):
        summary["recipe"] += f", --join-same-speaker {options['join_same_speaker']}"
        summary["joined rows per utterance (AR)"] = options["join_same_speaker"]
    for mode in ("ar", "nar"):
        if options.get("steps", {}).get(mode) == 0:
            summary["recipe"] += f", --{mode}-steps 0"
            summary[f"{mode.upper()}"] = "kept from the initial model"
            continue
        folder = os.path.join(lab_dir, "tts", mode)
        checkpoints = sorted((name for name in os.listdir(folder) if name.startswith("checkpoint-")),
                             key=lambda name: int(name.split("-")[1])) if os.path.isdir(folder) else []
        if not checkpoints:
            continue
        with open(os.path.join(folder, checkpoints[-1], "trainer_state.json")) as handle:
            state = json.load(handle)
        losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
        summary[f"{mode.upper()} steps"] = state["global_step"]
        summary[f"{mode.upper()} epochs"] = round(float(state.get("epoch", 0.0)), 2)
        if losses:
            summary[f"{mode.upper()} final training loss"] = round(float(losses[-1]), 3)
    return summary


def training_stages(training: dict | None) -> list[dict]:
    """The stages behind a model, oldest first: `training` (a `training_summary`) and, through its "initialised
    from" records, the summaries of the models it started from; each without that record."""
    stages = []
    while training:
        stages.append({key: value for key, value in training.items() if key != "initialised from"})
        training = (training.get("initialised from") or {}).get("its_training")
    return stages[::-1]


def _stages_table(stages: list[dict]) -> str:
    def steps(stage, mode):
        kept = stage.get(mode) == "kept from the initial model"
        return "kept" if kept else str(stage.get(f"{mode} steps", "")) + (
            f" ({stage[f'{mode} epochs']} epochs)" if f"{mode} epochs" in stage else "")

    def command(recipe):  # "valle lab tts --dir D (seed 1; how), --init-from M" -> a command line
        recipe = re.sub(r" \(seed (\d+);[^)]*\)", r" --seed \1", recipe)
        return recipe.replace(", --", " --")

    rows = ["| stage | command | AR steps | NAR steps | joined rows per utterance (AR) |", "|---|---|---|---|---|"]
    for number, stage in enumerate(stages, 1):
        rows.append(f"| {number} | `{command(stage.get('recipe', ''))}` | {steps(stage, 'AR')} | "
                    f"{steps(stage, 'NAR')} | {stage.get('joined rows per utterance (AR)', 'none')} |")
    return "\n".join(rows)


def bundle_card_texts(corpus_hours: float, speakers: int, prompts: list[dict], training: dict | None = None,
                      results: dict | None = None, sampling: dict | None = None) -> dict:
    """The lab bundle's own model-card sections (`hub_cards.build_model_card`'s `about`, `data_description`,
    `base_model_description`, `results_markdown`): what the folder holds and is for, its corpus, the stages it
    was trained in, and, given a `valle evaluate --lab` summary of it, the lab results. `sampling`: the AR
    sampling its `generation_config.json` sets (`valle.evaluation.effective_sampling`)."""
    from valle.evaluation import describe_sampling, markdown_table

    voices = ", ".join(f"`{prompt['name']}`" for prompt in prompts)
    about = (
        "A small VALL-E trained from scratch in the offline speech lab of the `valle-transformers` project "
        "(`valle lab tts`), which ships such a folder as its built-in model (`valle/assets/lab-valle`). It "
        "demonstrates the whole pipeline at lab scale: its voices are synthetic (espeak-ng) and it is **not a "
        "natural-sounding voice**, nor meant for any use beyond trying and testing the code. It speaks English "
        "as espeak-ng pronounces it.\n\n"
        "- `codec/`: the lab's own EnCodec (24 kHz, 8 x 1024 codes at 75 Hz, 6 kbps), which the processor "
        "loads; the model only works with this codec, not with `facebook/encodec_24khz`.\n"
        f"- `prompts/`: {len(prompts)} held-out voices (a WAV and its transcript each, speakers never seen in "
        f"training): {voices}.\n"
        "- With the project installed, `valle synthesize --text \"...\"` uses this folder and its first voice by "
        "default (`--voice NAME` picks another, `--model PATH` points to a copy of the folder)."
    )
    if sampling:
        about += (f"\n- `generation_config.json`: the AR's default is {describe_sampling(sampling)}; the sampling "
                  "flags of `valle synthesize` (or `generate()` keywords) override it.")
    stages = training_stages(training)
    if stages:
        about += "\n\nIt was trained in stages, each starting from the model of the one before:\n\n" + _stages_table(
            stages)
    data = (f"The lab corpus (`valle lab corpus`): synthetic sentences read by espeak-ng voices, {speakers} "
            f"training speakers, {corpus_hours:.1f} h of training audio; not on the Hub.")
    base = "the model of the stage before (see \"This checkpoint\"); not on the Hub." if len(stages) > 1 else None
    texts = {"about": about, "data_description": data, "base_model_description": base}
    if results:
        table = markdown_table(results, include_cer=True, caption="", notes=False)  # its data names a local folder
        test_set = results.get("test_set") or {}
        seeds = results.get("settings", {}).get("seeds") or []
        measured = results.get("settings", {}).get("sampling")
        how = f" ({describe_sampling(measured)})" if measured else ""
        texts["results_markdown"] = (
            f"Lab results (`valle evaluate --lab`: the paper's protocol on {test_set.get('utterances', '?')} "
            f"utterances of held-out lab speakers, sampled rows{how} averaged over {len(seeds)} seeds; WER/CER by the "
            "lab's character CTC recogniser, SPK by resemblyzer). They are not comparable with the paper's "
            "LibriSpeech numbers below.\n\n" + table
        )
    return texts


BUNDLE_PROMPTS = 4  # held-out voices shipped as ready-made prompts


def pick_prompts(corpus_dir: str, count: int = BUNDLE_PROMPTS, seed: int = 0,
                 min_seconds: float = 2.8, max_seconds: float = 4.5) -> list[dict]:
    """One utterance of `count` different held-out (test) speakers, each with a different espeak voice when
    possible, between `min_seconds` and `max_seconds` long (the whole utterance, so its transcript is exact)."""
    import random

    import datasets

    test = datasets.load_from_disk(corpus_dir)["test"].remove_columns("audio")
    rows = [row for row in test if min_seconds <= row["duration"] <= max_seconds]
    rng = random.Random(seed)
    rng.shuffle(rows)
    chosen, voices, speakers = [], set(), set()
    for strict in (True, False):
        for row in rows:
            if len(chosen) == count:
                break
            if row["speaker_id"] in speakers or (strict and row["voice"] in voices):
                continue
            chosen.append(row)
            voices.add(row["voice"])
            speakers.add(row["speaker_id"])
    if len(chosen) < count:
        raise ValueError(f"pick_prompts: only {len(chosen)} held-out speakers have a {min_seconds}-{max_seconds} s "
                         f"utterance; ask for fewer prompts or a wider range.")
    return sorted(chosen, key=lambda row: row["speaker_id"])


def build_bundle(lab_dir: str, destination: str, seed: int = 0, training: dict | None = None,
                 prompts: int = BUNDLE_PROMPTS, model_dir: str | None = None, results: dict | None = None,
                 sampling: dict | None = None) -> dict:
    """The built-in model folder: the merged lab VALL-E in fp16 (loads as float32), its processor with the lab's
    current codec (`trained_codec_dir`) in fp16, held-out prompt voices (`prompts/<speaker>.wav` + `.txt`) and a
    model card. `model_dir`: the model to bundle (default `lab_dir/tts/model`, what `valle lab tts` writes).
    `results`: a `valle evaluate --lab` summary of this very model (e.g. of an earlier bundle of it), for the card.
    `sampling`: `generate()` defaults to write into the bundle's generation config (e.g. `{"top_k": 10}`); a
    `results` summary must have been sampled the same way."""
    import shutil

    import numpy as np
    import soundfile

    from hub_cards import write_model_card
    from modeling_valle import VallEForConditionalCodecGeneration
    from processing_valle import VallEProcessor

    from valle.evaluation import SAMPLING_KEYS, describe_sampling, effective_sampling

    from .artifacts import save_fp16, trained_codec_dir
    from .codec import load_for_processor
    from .corpus import decode_audio, load_corpus

    model_dir = model_dir or os.path.join(lab_dir, "tts", "model")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(f"build_bundle: {model_dir} has no model; run `valle lab tts --dir {lab_dir}` first.")
    model = VallEForConditionalCodecGeneration.from_pretrained(model_dir).eval()
    if sampling:
        unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"build_bundle: {unknown} are not sampling options; choose from {list(SAMPLING_KEYS)}.")
        if sampling.get("top_k") is not None and sampling["top_k"] < 0:
            raise ValueError(f"build_bundle: top_k must be >= 0 (0: no top-k filtering), got {sampling['top_k']}.")
        if sampling.get("temperature") is not None and not sampling["temperature"] > 0:
            raise ValueError(f"build_bundle: temperature must be positive, got {sampling['temperature']}.")
        model.generation_config.update(**sampling)
    sampling = effective_sampling(model)
    measured = (results or {}).get("settings", {}).get("sampling")
    if measured and measured != sampling:
        raise ValueError(f"build_bundle: the results were measured with AR {describe_sampling(measured)}, but the "
                         f"bundle would default to {describe_sampling(sampling)}; bundle with the sampling the results "
                         "used (`valle lab bundle --top-k/--temperature`), or evaluate this bundle again (nothing "
                         "was changed).")
    if os.path.isdir(destination) and os.listdir(destination):
        if not os.path.isfile(os.path.join(destination, "lab_bundle.json")):
            raise FileExistsError(f"build_bundle: {destination} holds files that are not a lab bundle; choose an "
                                  "empty or new folder (nothing was changed).")
        shutil.rmtree(destination)  # an earlier bundle: replaced as a whole
    # The lab's current codec rather than the one saved with the model: after `valle lab decoder` that is the
    # decoder-trained codec, which makes the very same codes and better audio.
    processor = VallEProcessor(tokenizer=VallEProcessor.from_pretrained(model_dir).tokenizer,
                               codec=load_for_processor(trained_codec_dir(lab_dir)), codec_name_or_path=None)
    sizes = {"model": save_fp16(model, destination)}
    processor.save_pretrained(destination)
    codec_dir = os.path.join(destination, "codec")
    sizes["codec"] = save_fp16(processor.codec, codec_dir)

    prompts_dir = os.path.join(destination, "prompts")
    os.makedirs(prompts_dir)
    corpus = load_corpus(os.path.join(lab_dir, "corpus"))
    test = corpus["test"]
    index_of = {row_id: index for index, row_id in enumerate(test["id"])}
    chosen = pick_prompts(os.path.join(lab_dir, "corpus"), count=prompts, seed=seed)
    prompts = []
    for row in chosen:
        waveform, sampling_rate = decode_audio(test[index_of[row["id"]]]["audio"])
        name = row["speaker_id"].replace("+", "-")
        soundfile.write(os.path.join(prompts_dir, f"{name}.wav"), np.asarray(waveform, dtype=np.float32),
                        sampling_rate, subtype="PCM_16")
        with open(os.path.join(prompts_dir, f"{name}.txt"), "w", encoding="utf-8") as handle:
            handle.write(row["text"].strip() + "\n")
        prompts.append({"name": name, "text": row["text"], "seconds": round(row["duration"], 2), "source": row["id"]})

    summary = {"bytes": sizes, "prompts": prompts, "sampling": sampling,
               **({"training": training} if training else {})}
    with open(os.path.join(destination, "lab_bundle.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    info = {"data": "the offline lab corpus (espeak-ng voices, synthetic sentences; `valle lab corpus`)",
            "codec": "the lab EnCodec (24 kHz, 8 x 1024 codes, 6 kbps), not facebook/encodec_24khz"}
    if training:
        info.update({key: value for key, value in training.items() if isinstance(value, (str, int, float))})
    train = corpus["train"].select_columns(["duration", "speaker_id"])
    texts = bundle_card_texts(sum(train["duration"]) / 3600, len(set(train["speaker_id"])), prompts, training,
                              results, sampling)
    write_model_card(destination, overwrite=True, config=model.config, model_name="VALL-E lab (small, offline)",
                     languages="en", training_info=info, **texts)
    return summary
