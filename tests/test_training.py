"""Training: token-budget sampler, collator, Trainer wiring (overfit, resume, modes, eval metrics), 2-process CPU DDP,
and the `valle prepare` / `valle train` commands end to end."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from tests.utils import tiny_valle_model
from valle.collator import VallEDataCollator
from valle.sampler import TokenBudgetBatchSampler, padded_tokens
from valle.training import VallETrainer, build_training_arguments, set_train_mode, train

REPO = Path(__file__).resolve().parents[1]


def tiny_prepared(num_rows=12, seed=0, num_codebooks=4, codebook_size=16, speakers=3, prefix="utt"):
    """What `valle prepare` writes, with random phonemes and codes of varied lengths."""
    rng = np.random.default_rng(seed)
    rows = {"id": [], "speaker": [], "input_ids": [], "codes": [], "num_frames": []}
    for i in range(num_rows):
        frames, phonemes = int(rng.integers(8, 24)), int(rng.integers(4, 10))
        rows["id"].append(f"{prefix}{i}")
        rows["speaker"].append(f"spk{i % speakers}")
        rows["input_ids"].append(rng.integers(3, 40, phonemes).tolist())
        rows["codes"].append(rng.integers(0, codebook_size, (frames, num_codebooks)).tolist())
        rows["num_frames"].append(frames)
    return datasets.Dataset.from_dict(rows)


def quiet_args(output_dir, **overrides):
    values = dict(
        report_to="none", use_cpu=True, disable_tqdm=True, logging_steps=1, save_strategy="no", seed=0,
        dataloader_num_workers=0,
    )
    values.update(overrides)
    return build_training_arguments(str(output_dir), **values)


# ------------------------------------------------------------------------------------------------------------------
# Sampler


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sampler_every_item_once_per_epoch_within_budget_and_same_count_per_rank(world):
    lengths = np.random.default_rng(1).integers(5, 120, size=203).tolist()
    budget = 400
    for epoch in range(3):
        seen, counts = [], []
        for rank in range(world):
            sampler = TokenBudgetBatchSampler(lengths, max_tokens=budget, num_replicas=world, rank=rank, seed=7)
            sampler.set_epoch(epoch)
            batches = list(sampler)
            counts.append(len(batches))
            assert len(batches) == len(sampler)
            for batch in batches:
                assert padded_tokens(batch, lengths) <= budget
                seen.extend(batch)
        assert sorted(seen) == list(range(len(lengths)))  # each item exactly once, no rank shares an item
        assert len(set(counts)) == 1  # DDP: every rank takes the same number of steps


def test_sampler_is_reproducible_changes_with_epoch_and_buckets_by_length():
    lengths = np.random.default_rng(2).integers(5, 200, size=300).tolist()
    first = list(TokenBudgetBatchSampler(lengths, max_tokens=600, seed=3))
    again = list(TokenBudgetBatchSampler(lengths, max_tokens=600, seed=3))
    assert first == again
    later = TokenBudgetBatchSampler(lengths, max_tokens=600, seed=3)
    later.set_epoch(1)
    assert list(later) != first
    # Bucketing: padding wastes little of the budget (random batches of this data waste about half).
    padding = sum(padded_tokens(b, lengths) - sum(lengths[i] for i in b) for b in first)
    assert padding / sum(padded_tokens(b, lengths) for b in first) < 0.1
    ordered = list(TokenBudgetBatchSampler(lengths, max_tokens=600, shuffle=False))
    assert ordered == list(TokenBudgetBatchSampler(lengths, max_tokens=600, shuffle=False, seed=99))


def test_sampler_rejects_bad_input_with_the_fix():
    with pytest.raises(ValueError, match="max-seconds"):
        TokenBudgetBatchSampler([10, 500], max_tokens=100)
    with pytest.raises(ValueError, match="rank"):
        TokenBudgetBatchSampler([10, 20], max_tokens=100, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=">= 1 frame"):
        TokenBudgetBatchSampler([10, 0], max_tokens=100)


# ------------------------------------------------------------------------------------------------------------------
# Collator


def test_collator_pads_phonemes_and_codes_and_keeps_every_value():
    data = tiny_prepared(5)
    batch = VallEDataCollator(pad_token_id=0)([data[i] for i in range(5)])
    assert batch["labels"].shape == (5, max(data["num_frames"]), 4)
    for i in range(5):
        n, t = len(data[i]["input_ids"]), data[i]["num_frames"]
        assert batch["input_ids"][i, :n].tolist() == data[i]["input_ids"]
        assert batch["attention_mask"][i].sum() == n and (batch["input_ids"][i, n:] == 0).all()
        assert batch["labels"][i, :t].tolist() == data[i]["codes"]
        assert (batch["labels"][i, t:] == -100).all()
    model = tiny_valle_model()
    assert torch.isfinite(model(**batch).loss)


def test_collator_prompt_comes_from_another_utterance_of_the_same_speaker():
    data = tiny_prepared(9, speakers=3)
    collator = VallEDataCollator(prompt_dataset=data, prompt_max_frames=6, seed=1)
    features = [data[i] for i in range(4)]
    batch = collator(features)
    assert batch["prompt_codes"].shape[0] == 4 and batch["prompt_codes"].shape[1] <= 6
    for i, feature in enumerate(features):
        length = int(batch["prompt_attention_mask"][i].sum())
        prompt = batch["prompt_codes"][i, :length].tolist()
        sources = [
            row for row in data
            if row["speaker"] == feature["speaker"] and row["id"] != feature["id"]
            and any(row["codes"][s : s + length] == prompt for s in range(row["num_frames"] - length + 1))
        ]
        assert sources, f"prompt {i} is not a crop of another utterance of {feature['speaker']}"
    assert torch.equal(collator(features)["prompt_codes"], batch["prompt_codes"])  # reproducible
    assert torch.isfinite(tiny_valle_model()(**batch).loss)
    lonely = tiny_prepared(2, speakers=2)
    lonely_batch = VallEDataCollator(prompt_dataset=lonely)([lonely[0]])
    assert lonely_batch["prompt_attention_mask"].sum() == 0


def test_collator_errors_name_the_problem():
    with pytest.raises(ValueError, match="codes"):
        VallEDataCollator()([{"input_ids": [3, 4]}])
    with pytest.raises(ValueError, match="speaker"):
        VallEDataCollator(prompt_dataset=tiny_prepared(3).remove_columns("speaker"))


# ------------------------------------------------------------------------------------------------------------------
# Trainer


def losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry and "eval_loss" not in entry]


def test_join_same_speaker_appends_joined_rows_of_one_speaker_within_the_length_limit():
    from valle.data import join_same_speaker

    data = tiny_prepared(30, speakers=3).map(lambda row: {"input_ids": [1, *row["input_ids"], 2]})
    rows = {row["id"]: row for row in data}
    joined = join_same_speaker(data, 1.0, separator_id=8, bos_token_id=1, eos_token_id=2, max_frames=40, seed=3)
    assert joined.features == data.features and joined[: len(data)] == data[:]  # the originals first, untouched
    extra = joined.select(range(len(data), len(joined)))
    assert 0 < len(extra) <= len(data)
    for row in extra:
        first, second = (rows[part] for part in row["id"].split("+"))
        assert first["id"] != second["id"] and first["speaker"] == second["speaker"] == row["speaker"]
        # one begin and one end token, a word boundary at the joint
        assert row["input_ids"] == first["input_ids"][:-1] + [8] + second["input_ids"][1:]
        assert row["codes"] == first["codes"] + second["codes"]
        assert row["num_frames"] == len(row["codes"]) == first["num_frames"] + second["num_frames"] <= 40
    again = join_same_speaker(data, 1.0, separator_id=8, bos_token_id=1, eos_token_id=2, max_frames=40, seed=3)
    assert again["id"] == joined["id"]  # the same seed draws the same pairs (a resumed run sees the same data)
    other = join_same_speaker(data, 0.5, separator_id=None, max_frames=60, seed=4)
    assert len(other) - len(data) == 15  # every drawn utterance found a partner within 60 frames
    default = join_same_speaker(data, 1.0, separator_id=None)  # limit: the longest utterance of the data
    assert len(default) > len(data) and max(default["num_frames"]) == max(data["num_frames"])
    assert all(len(row["input_ids"]) == sum(len(rows[part]["input_ids"]) for part in row["id"].split("+"))
               for row in other.select(range(len(data), len(other))))  # no separator, specials kept as they were

    with pytest.raises(ValueError, match="speaker"):
        join_same_speaker(data.remove_columns("speaker"), 1.0, separator_id=8)
    with pytest.raises(ValueError, match="> 0"):
        join_same_speaker(data, 0.0, separator_id=8)
    with pytest.raises(ValueError, match="no two utterances"):
        join_same_speaker(data, 1.0, separator_id=8, max_frames=10)
    with pytest.raises(ValueError, match="processor"):
        train(tiny_valle_model(), quiet_args("unused"), data, join_same_speaker=1.0)
    from valle.cli import main

    assert main(["train", "--model", "m.json", "--join-same-speaker", "1", "data", "--", "--output_dir", "x"]) == 2


def test_card_data_description_counts_joined_rows_apart():
    from valle.training import _data_description

    rows = datasets.Dataset.from_dict({"speaker": ["a", "b", "a", "a"], "num_frames": [75 * 1800] * 4})
    # The last row joins two utterances: its audio is theirs again, so it is not counted as more hours.
    assert _data_description(rows, 75, "speaker", joined_rows=1) == (
        "Prepared data (`valle prepare`): 3 utterances, 1.5 h of audio; 2 speakers; plus 1 joined row (two "
        "utterances of one speaker each, `--join-same-speaker`).")
    assert _data_description([1, 2], 75, "speaker") is None  # not a table: nothing to say


def test_tiny_model_overfits_tiny_dataset_and_reports_per_codebook_accuracy(tmp_path):
    torch.set_num_threads(1)
    data = tiny_prepared(12)
    model = tiny_valle_model(hidden_size=64, intermediate_size=128)
    args = quiet_args(tmp_path / "run", num_train_epochs=80, learning_rate=3e-3, eval_strategy="no")
    trainer = train(model, args, data, max_tokens=64)
    history = losses(trainer)
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.5 * first, (first, last)
    metrics = trainer.evaluate(data)
    assert {f"eval_acc_codebook_{k}" for k in range(1, 5)} <= set(metrics)
    assert metrics["eval_acc_codebook_1"] > 0.8  # the AR memorised codebook 1 (chance: 1/17)
    # the AR's text-reading statistics come with every evaluation, and are logged
    heads = model.config.num_hidden_layers * model.config.num_attention_heads
    assert 0 <= metrics["eval_ar_alignment_heads"] <= heads
    assert -1 <= metrics["eval_ar_best_head_monotonicity"] <= 1 and 0 <= metrics["eval_ar_best_head_text_mass"] <= 1
    assert 0 < metrics["eval_ar_best_head_sharpness"] <= 1
    assert any("eval_ar_alignment_heads" in entry for entry in trainer.state.log_history)
    assert trainer.evaluate(data)["eval_loss"] == metrics["eval_loss"]  # fixed draws: evaluation is repeatable
    saved = Path(args.output_dir)
    assert (saved / "model.safetensors").exists()
    card = (saved / "README.md").read_text()
    assert "acoustic frames per device" in card and str(trainer.state.global_step) in card
    hours = sum(data["num_frames"]) / model.config.frame_rate / 3600
    assert f"Prepared data (`valle prepare`): 12 utterances, {hours:.1f} h of audio; 3 speakers." in card


def test_resume_from_checkpoint_continues_the_same_run(tmp_path):
    """10 updates straight vs. stopped after 4 (mid-epoch) and resumed from that checkpoint: same losses, same
    weights. Data order (skip + epoch), NAR stage / prompt draws (RNG state) and the optimiser all carry over."""
    torch.set_num_threads(1)
    data = tiny_prepared(12)
    common = dict(max_steps=10, save_strategy="steps", save_steps=4, learning_rate=2e-3, gradient_accumulation_steps=2)

    straight = train(tiny_valle_model(), quiet_args(tmp_path / "a", **common), data, max_tokens=48)
    stopped = VallETrainer(model=tiny_valle_model(), args=quiet_args(tmp_path / "b", **common), train_dataset=data,
                           max_tokens=48)
    updates_per_epoch = -(-len(stopped.get_train_dataloader()) // 2)
    assert 4 % updates_per_epoch and 4 > updates_per_epoch  # step 4 is inside epoch 2: batches must be skipped
    checkpoint = tmp_path / "a" / "checkpoint-4"
    assert checkpoint.is_dir()
    resumed = train(tiny_valle_model(seed=5), quiet_args(tmp_path / "b", **common), data, max_tokens=48,
                    resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 10
    np.testing.assert_allclose(losses(resumed)[-6:], losses(straight)[-6:], rtol=1e-5)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    # Resuming the finished run trains nothing more: no step 11, weights untouched.
    again = train(tiny_valle_model(seed=5), quiet_args(tmp_path / "b", **common), data, max_tokens=48,
                  resume_from_checkpoint=True)
    assert again.state.global_step == 10 and not (tmp_path / "b" / "checkpoint-11").exists()
    for (name, a), b in zip(resumed.model.state_dict().items(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("mode", ["ar", "nar"])
def test_single_decoder_modes_train_only_that_decoder(tmp_path, mode):
    torch.set_num_threads(1)
    model = tiny_valle_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = train(model, quiet_args(tmp_path / mode, max_steps=3, learning_rate=1e-2), tiny_prepared(6), max_tokens=64,
                    train_mode=mode)
    other = "nar_" if mode == "ar" else "ar_"
    for name, parameter in trainer.model.named_parameters():
        changed = not torch.equal(before[name], parameter.detach())
        assert changed != name.startswith(other), name
    metrics = trainer.evaluate(tiny_prepared(4))
    assert ("eval_acc_codebook_1" in metrics) == (mode == "ar")
    assert ("eval_acc_codebook_2" in metrics) == (mode == "nar")
    assert ("eval_ar_alignment_heads" in metrics) == (mode == "ar")  # only where the AR is trained
    trainer.eval_dataset = {"dev": tiny_prepared(4), "test": tiny_prepared(3, seed=1)}  # several sets: one each
    named = trainer.evaluate()
    assert ("eval_dev_ar_alignment_heads" in named and "eval_test_ar_alignment_heads" in named) == (mode == "ar")
    trainer.alignment_examples = 0
    assert "eval_ar_alignment_heads" not in trainer.evaluate(tiny_prepared(4))
    with pytest.raises(ValueError, match="alignment_examples"):
        VallETrainer(model=model, args=quiet_args(tmp_path / "x"), train_dataset=tiny_prepared(4), alignment_examples=-1)
    from valle.cli import main

    assert main(["train", "--model", "m.json", "--alignment-examples", "-1", str(tmp_path), "--", "--output_dir",
                 str(tmp_path / "y")]) == 2
    with pytest.raises(ValueError, match="train_mode"):
        set_train_mode(model, "decoder")


def test_trainer_needs_prepared_data(tmp_path):
    trainer = VallETrainer(model=tiny_valle_model(), args=quiet_args(tmp_path), train_dataset=tiny_prepared(4).remove_columns("num_frames"))
    with pytest.raises(ValueError, match="num_frames"):
        trainer.get_train_dataloader()


# ------------------------------------------------------------------------------------------------------------------
# Two processes, CPU, gloo


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from tests.test_training import tiny_prepared, quiet_args
    from tests.utils import tiny_valle_model
    from valle.collator import VallEDataCollator
    from valle.training import end_distributed, train

    seen = []
    class Recording(VallEDataCollator):
        def __call__(self, features):
            seen.append([f["id"] for f in features])
            return super().__call__(features)

    import valle.training as training
    training.VallEDataCollator = Recording
    out = sys.argv[1]
    data = tiny_prepared(14)
    trainer = train(tiny_valle_model(), quiet_args(out, num_train_epochs=2, learning_rate=2e-3, eval_strategy="epoch"),
                    data, eval_dataset=tiny_prepared(6, seed=1, prefix="eval"), max_tokens=48)
    rank = int(os.environ["RANK"])
    weights = sum(float(p.double().sum()) for p in trainer.model.parameters())
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    with open(os.path.join(out, f"rank{{rank}}.json"), "w") as handle:
        json.dump({{"seen": seen, "weights": weights, "world": trainer.args.world_size, "steps": trainer.state.global_step,
                   "eval": evals[-1]}}, handle)
    end_distributed()  # without it, a rank can abort at exit (gloo threads) and fail the run
    """
)


LAUNCHERS = {  # {port}: a free port, found when the test runs (a fixed one can be taken, or still closing)
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "{port}"],
    # `--cpu --num_processes 2` would start ONE process: real CPU DDP is `--multi_gpu` with use_cpu=True.
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "{port}"],
}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_cpu_ddp_run_shards_data_and_keeps_ranks_in_sync(tmp_path, launcher):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    port = str(_free_port())
    command = [sys.executable, *(part.replace("{port}", port) for part in LAUNCHERS[launcher]), str(script),
               str(tmp_path / "out")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["weights"] == pytest.approx(ranks[1]["weights"], rel=1e-6)  # DDP kept the replicas equal
    assert ranks[0]["eval"]["eval_loss"] == pytest.approx(ranks[1]["eval"]["eval_loss"])
    # The collator also sees the evaluation batches ("eval*" ids); per epoch, the two ranks' training batches hold
    # all 14 training items exactly once.
    train_ids = {f"utt{i}" for i in range(14)}
    per_rank = [[b for b in r["seen"] if set(b) <= train_ids] for r in ranks]
    steps_per_epoch = ranks[0]["steps"] // 2
    for epoch in range(2):
        ids = []
        for batches in per_rank:
            ids.extend(i for b in batches[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch] for i in b)
        assert sorted(ids) == sorted(train_ids), epoch


# ------------------------------------------------------------------------------------------------------------------
# The commands, end to end: prepare a folder of recordings, train, resume


def test_cli_prepare_train_resume(tmp_path):
    import soundfile as sf

    from processing_valle import VallEProcessor
    from tests.utils import TINY_CORPUS, tiny_codec, tiny_tokenizer, tiny_waveform

    torch.set_num_threads(1)
    wavs = tmp_path / "wavs"
    for i in range(8):
        folder = wavs / f"spk{i % 2}" / "ch1"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"u{i}.wav", tiny_waveform(0.3 + 0.05 * i, sampling_rate=16000, seed=i), 16000)
        (folder / f"u{i}.normalized.txt").write_text(TINY_CORPUS[i % len(TINY_CORPUS)])
    processor = VallEProcessor(tiny_tokenizer(), codec=tiny_codec())
    processor.save_pretrained(tmp_path / "processor")
    config = tiny_valle_model(num_codebooks=8, codebook_size=1024, vocab_size=processor.tokenizer.vocab_size).config
    (tmp_path / "model.json").write_text(json.dumps(config.to_diff_dict()))

    def valle(*argv):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, "-m", "valle", *map(str, argv)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    prepared = tmp_path / "prepared"
    assert "complete: 8 rows read, 8 kept" in valle("prepare", wavs, prepared, "--processor", tmp_path / "processor",
                                                  "--min-seconds", "0.1")
    data = datasets.load_from_disk(str(prepared))
    assert set(data["speaker"]) == {"spk0", "spk1"} and np.asarray(data[0]["codes"]).shape[1] == 8

    run = tmp_path / "run"
    options = ["train", "--model", tmp_path / "model.json", "--processor", tmp_path / "processor",
               "--max-tokens", "200", "--prompts", "--join-same-speaker", "1",
               "--join-max-frames", "100"]
    trainer_args = [prepared, "--", "--output_dir", run, "--use_cpu", "--report_to", "none", "--save_steps", "2",
                    "--logging_steps", "1", "--disable_tqdm", "true"]
    valle(*options, *trainer_args, "--max_steps", "2")
    assert (run / "checkpoint-2").is_dir() and (run / "processor_config.json").exists()
    out = valle(*options, "--resume", *trainer_args, "--max_steps", "4")
    assert "after 4 steps" in out
    state = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["log_history"][0]["step"] == 1  # history carried over from step 1


def test_train_mode_both_retrains_a_decoder_switched_off_earlier():
    model = tiny_valle_model()
    set_train_mode(model, "ar")
    assert model.config.nar_loss_weight == 0
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("nar_"))
    set_train_mode(model, "both")
    assert model.config.ar_loss_weight == 1.0 and model.config.nar_loss_weight == 1.0
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.endswith("position.alpha"))
