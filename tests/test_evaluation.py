"""`valle evaluate`: the paper's protocol harness, checked with tiny random models (the numbers mean nothing; the
plumbing is what is tested: test-case selection, rows, seeds, resume, JSON schema, table, errors)."""

import io
import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from valle.cli import main
from valle.evaluation import (
    Utterance,
    corpus_error_rate,
    error_counts,
    load_utterances,
    markdown_table,
    normalize_text,
    read_results,
    select_test_cases,
    summarize,
)
from valle.smoke import SMOKE_SENTENCES, voiced_signal

CHARACTERS = ["<pad>", "<unk>", "|", "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def _flac(waveform, rate):
    buffer = io.BytesIO()
    sf.write(buffer, waveform, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _save_dataset(folder, rows, rate, extra_columns=()):
    """A DatasetDict with a `test` split, audio as FLAC bytes (an Audio column without decoding, like the lab's)."""
    import datasets

    features = {"id": datasets.Value("string"),
                "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                "text": datasets.Value("string"), "speaker_id": datasets.Value("string")}
    features.update({name: datasets.Value("float32") for name in extra_columns})
    columns = {name: [row[name] for row in rows] for name in features}
    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=rate, decode=False))
    datasets.DatasetDict({"test": dataset}).save_to_disk(str(folder))
    return folder


def _rows(rate, with_duration=False):
    """2 speakers x 3 utterances of 4.1-4.6 s, plus one 2 s utterance (outside 4-10 s: a prompt source only)."""
    rows = []
    for speaker in range(2):
        for index, seconds in enumerate([4.1, 4.6, 4.3, 2.0][: 4 if speaker == 0 else 3]):
            waveform = voiced_signal(seconds, sampling_rate=rate, seed=10 * speaker + index) * (0.5 + 0.3 * speaker)
            row = {"id": f"s{speaker}-{index}",
                   "audio": {"bytes": _flac(waveform, rate), "path": f"s{speaker}-{index}.flac"},
                   "text": SMOKE_SENTENCES[(speaker * 3 + index) % len(SMOKE_SENTENCES)], "speaker_id": f"spk{speaker}"}
            if with_duration:
                row["duration"] = seconds
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def lab_like(tmp_path_factory):
    """A tiny random VALL-E bundle, a tiny random HubertForCTC (character vocabulary), a tiny random
    WavLMForXVector and a 16 kHz test set: the full-scale path with stand-ins of the same classes."""
    import torch
    from transformers import (HubertConfig, HubertForCTC, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Processor, WavLMConfig, WavLMForXVector)

    from valle.smoke import build_random_bundle

    root = tmp_path_factory.mktemp("evaluate")
    bundle = build_random_bundle(root / "model", hidden_size=32)
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
                 conv_stride=(5, 64), conv_kernel=(10, 64), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=True)
    vocab = root / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(CHARACTERS)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    torch.manual_seed(0)
    asr = HubertForCTC(HubertConfig(vocab_size=len(CHARACTERS), pad_token_id=0, **small)).eval()
    asr.save_pretrained(root / "asr")
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(root / "asr")
    speaker = WavLMForXVector(WavLMConfig(tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
                                          xvector_output_dim=8, num_buckets=32, **small)).eval()
    speaker.save_pretrained(root / "speaker")
    extractor.save_pretrained(root / "speaker")
    data = _save_dataset(root / "data", _rows(16000), 16000)
    return {"root": root, "model": str(bundle), "asr": str(root / "asr"), "speaker": str(root / "speaker"),
            "data": str(data)}


def _evaluate_args(setup, out, *extra):
    return ["evaluate", "--model", setup["model"], "--dataset", setup["data"], "--asr-model", setup["asr"],
            "--speaker-model", setup["speaker"], "--out", str(out), "--limit", "4", "--max-new-seconds", "0.3",
            "--no-progress", *extra]


# ---------------------------------------------------------------------------------------------------------------------

def assert_cli_error(capsys, argv, pattern):
    """The command line reports bad input as one clean line on stderr and exit status 2."""
    capsys.readouterr()
    assert main(*argv) == 2
    assert re.search(pattern, capsys.readouterr().err), pattern

def test_normalize_text_and_error_counts():
    assert normalize_text("Don\u2019t stop\u2014it's 'GREAT', Dr. Smith!") == "don't stop it's great dr smith"
    assert normalize_text("  forty-two\tapples ") == "forty two apples"
    assert normalize_text("42 apples") == "42 apples"  # numbers are not spelled out (documented limit)
    counts = error_counts("The cat sat.", "the BAT sat on")
    assert counts["word_errors"] == 2 and counts["reference_words"] == 3  # one substitution, one insertion
    assert counts["char_errors"] == 4 and counts["reference_chars"] == len("the cat sat")
    assert error_counts("Hello, world!", "HELLO WORLD")["word_errors"] == 0
    with pytest.raises(TypeError, match="expected a string"):
        normalize_text(None)


def test_corpus_error_rate_pools_edits_over_references():
    records = [error_counts("The cat sat.", "the BAT sat on"), error_counts("a b c d e f g", "a b c d e f g")]
    # 2 word edits over 3 + 7 reference words, not the mean of 2/3 and 0/7
    assert corpus_error_rate(records, "word") == pytest.approx(20.0)
    assert corpus_error_rate(records, "char") == pytest.approx(100 * 4 / (11 + 13))
    assert corpus_error_rate([], "char") == 0.0
    with pytest.raises(ValueError, match="'word' or 'char'"):
        corpus_error_rate(records, "phoneme")


def test_select_test_cases_follows_the_protocol():
    def utterance(uid, speaker, seconds):
        return Utterance(id=uid, speaker_id=speaker, text="x", seconds=seconds, audio=lambda: None)

    utterances = ([utterance(f"a{i}", "a", s) for i, s in enumerate([5.0, 12.0, 3.5, 2.5, 6.0])]
                  + [utterance("b0", "b", 7.0), utterance("b1", "b", 2.0)]
                  + [utterance(f"c{i}", "c", 4.5) for i in range(3)])
    cases, skipped = select_test_cases(utterances, seed=1)
    assert [c.utterance.id for c in cases] == ["a0", "c0", "a4", "c1", "c2"]  # round robin over speakers
    assert skipped == {"outside_duration_range": 4, "no_other_utterance_for_prompt": 1}  # b0's only peer is 2 s
    for case in cases:
        assert case.prompt.speaker_id == case.utterance.speaker_id and case.prompt.id != case.utterance.id
        assert case.prompt.seconds >= 3.0 and 0 <= case.prompt_start <= case.prompt.seconds - 3.0
    again, _ = select_test_cases(utterances, seed=1)
    assert [(c.prompt.id, c.prompt_start) for c in again] == [(c.prompt.id, c.prompt_start) for c in cases]
    fewer, _ = select_test_cases(utterances, seed=1, limit=3)
    assert [c.utterance.id for c in fewer] == ["a0", "c0", "a4"]  # a prefix of the larger selection
    with pytest.raises(ValueError, match="no test case"):
        select_test_cases(utterances, min_seconds=20, max_seconds=30)
    with pytest.raises(ValueError, match="prompt_seconds < min_seconds"):
        select_test_cases(utterances, min_seconds=2.0, prompt_seconds=3.0)
    with pytest.raises(ValueError, match="occurs twice"):
        select_test_cases(utterances + [utterance("a0", "a", 5.0)])


def test_summary_is_corpus_level_per_seed_then_mean_and_spread_over_seeds():
    def record(system, seed, errors, words, spk):
        return {"system": system, "utterance_id": f"u{words}", "speaker_id": f"s{words}", "seed": seed,
                "word_errors": errors,
                "reference_words": words, "char_errors": errors, "reference_chars": 4 * words, "spk": spk,
                "error": None if spk is not None else "too short", "spk_unjudged": spk is None}

    records = [record("ground_truth", None, 0, 10, 0.8), record("ground_truth", None, 1, 30, 0.6),
               # seed 0: (1 + 3) / (10 + 30) = 10 %, not the mean of 10 % and 10 %... seed 1: (5 + 3) / 40 = 20 %
               record("valle", 0, 1, 10, 0.5), record("valle", 0, 3, 30, 0.3),
               record("valle", 1, 5, 10, 0.4), record("valle", 1, 3, 30, None)]
    summary = summarize(records, {"seeds": [0, 1], "data": "toy"})
    truth, valle = summary["table"]
    assert truth["wer"] == pytest.approx(2.5) and truth["spk"] == pytest.approx(0.7) and truth["wer_spread"] == 0
    assert [s["wer"] for s in valle["per_seed"]] == pytest.approx([10.0, 20.0])
    assert valle["wer"] == pytest.approx(15.0) and valle["wer_spread"] == pytest.approx(np.std([10, 20], ddof=1))
    assert valle["spk"] == pytest.approx((0.4 + 0.4) / 2) and valle["unjudged"] == 1  # the unjudged output has no SPK
    table = markdown_table({**summary, "test_set": {"utterances": 2, "speakers": 1, "hours": 0.01}})
    assert table.splitlines()[:4] == ["| system (toy) | WER | SPK |", "|---|---|---|",
                                      "| ground truth | 2.5 | 0.700 |", "| VALL-E | 15.0 ± 7.1 | 0.400 ± 0.000 |"]
    assert "1 outputs too short to judge their speaker (left out of SPK)" in table
    assert "transcribe" not in table  # that output was transcribed: it is not counted as deleted words
    assert "| WER | CER | SPK |" in markdown_table(summary, include_cer=True)
    # For a model card: no local data path in the header, no notes under the table.
    bare = markdown_table({**summary, "test_set": {"utterances": 2, "speakers": 1, "hours": 0.01}}, caption="",
                          notes=False)
    assert bare.splitlines()[0] == "| system | WER | SPK |" and len(bare.splitlines()) == 4
    # Per speaker (seeds pooled): u10 is speaker s10, u30 speaker s30.
    by_speaker = summary["by_speaker"]
    assert list(by_speaker) == ["ground_truth", "valle"]
    assert by_speaker["valle"]["s10"] == {"wer": pytest.approx(100 * (1 + 5) / 20), "cer": pytest.approx(
        100 * (1 + 5) / 80), "outputs": 2}
    assert by_speaker["ground_truth"]["s30"]["wer"] == pytest.approx(100 / 30)
    from valle.evaluation import speaker_table

    assert speaker_table(summary, "wer").splitlines() == [
        "| speaker (WER %, seeds pooled) | ground_truth | valle |", "|---|---|---|",
        "| s10 | 0.0 | 30.0 |", "| s30 | 3.3 | 10.0 |"]
    with pytest.raises(ValueError, match="'wer' or 'cer'"):
        speaker_table(summary, "spk")


def test_read_results_drops_a_cut_off_last_line_and_refuses_an_edited_file(tmp_path):
    path = tmp_path / "results.jsonl"
    good = [{"system": "valle", "utterance_id": "u1", "seed": 0}, {"system": "ground_truth", "utterance_id": "u1",
                                                                      "seed": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"system": "valle", "utt')
    assert sorted(read_results(path)) == ["ground_truth|u1|-", "valle|u1|0"]
    path.write_text(json.dumps(good[0]) + "\nnot json\n" + json.dumps(good[1]) + "\n")
    with pytest.raises(ValueError, match="line 2 .*changed by hand"):
        read_results(path)


def test_librispeech_folder_layout(tmp_path):
    chapter = tmp_path / "test-clean" / "121" / "123852"
    chapter.mkdir(parents=True)
    for index, seconds in enumerate([4.5, 3.2]):
        sf.write(chapter / f"121-123852-{index:04d}.flac", voiced_signal(seconds, 16000, seed=index), 16000)
    (chapter / "121-123852.trans.txt").write_text("121-123852-0000 THOSE PRETTY WRONGS\n121-123852-0001 AY ME\n")
    utterances = load_utterances(str(tmp_path / "test-clean"))
    assert [(u.id, u.speaker_id, u.text) for u in utterances] == [
        ("121-123852-0000", "121", "THOSE PRETTY WRONGS"), ("121-123852-0001", "121", "AY ME")]
    assert utterances[0].seconds == pytest.approx(4.5, abs=1e-3)
    assert utterances[1].load(24000).shape == (int(3.2 * 24000),)  # resampled on load
    (chapter / "121-123852-0001.flac").unlink()
    with pytest.raises(FileNotFoundError, match="121-123852-0001.flac"):
        load_utterances(str(tmp_path / "test-clean"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="neither a datasets folder"):
        load_utterances(str(empty))


def test_full_scale_rows_seeds_json_table_and_resume(lab_like, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_evaluate_args(lab_like, out, "--seeds", "2")) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())

    # Rows in the paper's order; the deterministic rows once, the sampled ones once per seed.
    assert [row["title"] for row in summary["table"]] == [
        "ground truth", "codec resynthesis", "VALL-E", "VALL-E-continual"]
    assert [row["seeds"] for row in summary["table"]] == [[None], [None], [0, 1], [0, 1]]
    assert summary["test_set"] == {"utterances": 4, "speakers": 2, "hours": pytest.approx(17.5 / 3600, abs=1e-3)}
    results = summary["results"]
    assert len(results) == 4 * (1 + 1 + 2 + 2)
    assert results == sorted(read_results(out / "results.jsonl").values(),
                             key=lambda r: (["ground_truth", "codec_resynthesis", "valle", "valle_continual"]
                                            .index(r["system"]), r["utterance_id"], r["seed"] or 0))
    by_id = {f"s{s}-{i}": (f"spk{s}", SMOKE_SENTENCES[(s * 3 + i) % len(SMOKE_SENTENCES)])
             for s in range(2) for i in range(4)}
    for record in results:
        assert {"system", "utterance_id", "speaker_id", "seed", "prompt_id", "prompt_start", "reference",
                "hypothesis", "word_errors", "reference_words", "wer", "cer", "spk", "error",
                "audio_seconds"} <= set(record)
        speaker, text = by_id[record["utterance_id"]]
        assert record["speaker_id"] == speaker and record["reference"] == text
        assert record["wer"] == record["word_errors"] / record["reference_words"]
        assert -1.0 <= record["spk"] <= 1.0 and record["error"] is None
        if record["system"] == "valle_continual":
            assert record["prompt_id"] == record["utterance_id"] and record["prompt_start"] == 0.0
            # WER is scored on prompt (3 s) + continuation (at most 0.3 s here)
            assert 3.0 <= record["audio_seconds"] <= 3.0 + 0.3 + 0.02
        else:
            assert record["prompt_id"] != record["utterance_id"] and by_id[record["prompt_id"]][0] == speaker
        if record["system"] == "valle":
            assert 0 < record["audio_seconds"] <= 0.3 + 0.02 and record["generated_seconds"] == record["audio_seconds"]
        if record["system"] in ("ground_truth", "codec_resynthesis"):
            assert record["audio_seconds"] >= 4.0
    # The table's numbers are the corpus-level aggregates of the records, per seed, then over seeds.
    valle = summary["table"][2]
    per_seed = []
    for seed in (0, 1):
        items = [r for r in results if r["system"] == "valle" and r["seed"] == seed]
        per_seed.append(100 * sum(r["word_errors"] for r in items) / sum(r["reference_words"] for r in items))
    assert valle["wer"] == pytest.approx(np.mean(per_seed))
    assert valle["wer_spread"] == pytest.approx(np.std(per_seed, ddof=1))
    # Each seed samples its own outputs (different similarities), the same seed the same ones (see resume below).
    spk = {seed: [r["spk"] for r in results if r["system"] == "valle" and r["seed"] == seed] for seed in (0, 1)}
    assert spk[0] != spk[1]
    assert valle["spk"] == pytest.approx(np.mean([np.mean(spk[0]), np.mean(spk[1])]))
    assert "| VALL-E | " in printed and " ± " in printed.split("| VALL-E |")[1].splitlines()[0]
    assert " ± " not in printed.split("| ground truth |")[1].splitlines()[0]
    assert (out / "table.md").read_text().strip() in printed
    # How the AR sampled is recorded as it took effect (no flag given: the model's generation config) and said.
    sampling = summary["settings"]["sampling"]
    assert sampling == {"do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 1.0,
                        "repetition_aware_sampling": False}
    assert "; AR sampling top-k 50, temperature 1.0;" in printed

    # Per speaker, on request (always in summary.json).
    assert main(_evaluate_args(lab_like, out, "--seeds", "2", "--by-speaker")) == 0
    by_speaker = capsys.readouterr().out.split("| speaker (WER %, seeds pooled) |")[1]
    assert "| spk0 |" in by_speaker and "| spk1 |" in by_speaker
    assert set(summary["by_speaker"]["valle"]) == {"spk0", "spk1"}
    assert sum(v["outputs"] for v in summary["by_speaker"]["valle"].values()) == 4 * 2

    # Interrupted: 5 records and half a line survive. The resumed run redoes only the rest, and gets the same results.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(out / "settings.json", resumed / "settings.json")
    lines = (out / "results.jsonl").read_text().splitlines()
    (resumed / "results.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2])
    assert main(_evaluate_args(lab_like, resumed, "--seeds", "2")) == 0
    assert "resuming: 5 of 24 results" in capsys.readouterr().out
    again = json.loads((resumed / "summary.json").read_text())
    assert again["results"] == results and again["table"] == summary["table"]
    assert sorted(read_results(resumed / "results.jsonl")) == sorted(read_results(out / "results.jsonl"))

    # One more seed: only its 8 results are computed; the two first seeds are untouched.
    assert main(_evaluate_args(lab_like, out, "--seeds", "3")) == 0
    assert "resuming: 24 of 32 results" in capsys.readouterr().out
    grown = json.loads((out / "summary.json").read_text())
    assert grown["table"][2]["seeds"] == [0, 1, 2] and grown["table"][2]["per_seed"][:2] == valle["per_seed"]

    # Results of different settings are never mixed.
    assert_cli_error(capsys, [_evaluate_args(lab_like, out, "--min-seconds", "4.2")], "different evaluation.*min_seconds")
    # ... nor are results of a model that sampled otherwise by default (its generation config changed).
    settings = json.loads((out / "settings.json").read_text())
    (out / "settings.json").write_text(json.dumps({**settings, "sampling": {**sampling, "top_k": 10}}))
    assert_cli_error(capsys, [_evaluate_args(lab_like, out, "--seeds", "3")], "different evaluation.*sampling")


def test_workers_share_the_cases_and_give_the_results_of_one_process(lab_like, tmp_path, capfd):
    # capfd: the workers are processes of their own, whose output reaches the file descriptors only
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    assert main(_evaluate_args(lab_like, alone, "--seeds", "2", "--threads", "1")) == 0
    capfd.readouterr()
    assert main(_evaluate_args(lab_like, shared, "--seeds", "2", "--workers", "2", "--threads", "1")) == 0
    captured = capfd.readouterr()
    assert "2 workers, 1 torch thread(s) each" in captured.err
    # The summarising pass found every result the workers wrote and computed none again.
    assert "resuming: 24 of 24 results" in captured.out and "| VALL-E | " in captured.out
    expected, got = (json.loads((folder / "summary.json").read_text()) for folder in (alone, shared))
    assert len(got["results"]) == len(expected["results"]) == 4 * (1 + 1 + 2 + 2)

    def rounded(value):  # similarities agree to float rounding only (another process, other kernels' order)
        if isinstance(value, float):
            return round(value, 5)
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        return [rounded(item) for item in value] if isinstance(value, list) else value

    assert rounded(got["results"]) == rounded(expected["results"])
    assert rounded(got["table"]) == rounded(expected["table"])
    # The workers' files were merged into results.jsonl, each result once, and removed.
    assert len((shared / "results.jsonl").read_text().splitlines()) == 24
    assert not list(shared.glob("results.worker*"))

    # More workers than test cases: the idle one is harmless.
    few = tmp_path / "few"
    assert main(_evaluate_args(lab_like, few, "--seeds", "1", "--limit", "2", "--workers", "3", "--threads", "1")) == 0
    assert json.loads((few / "summary.json").read_text())["test_set"]["utterances"] == 2

    assert_cli_error(capfd, [_evaluate_args(lab_like, tmp_path / "x", "--workers", "0")], "--workers must be at least 1")
    assert_cli_error(capfd, [_evaluate_args(lab_like, tmp_path / "y", "--threads", "0")], "--threads must be at least 1")
    # Bad input stops every worker: the error is named, and so is the fix (not a resume that would fail again).
    assert main(_evaluate_args(lab_like, tmp_path / "z", "--workers", "2", "--split", "dev")) == 2
    err = capfd.readouterr().err
    assert "(worker 1 of 2): error:" in err and "no split 'dev'" in err
    assert "the workers stopped on the error above; fix it" in err


def _ground_truth_cases(rate=16000):
    def audio():
        return {"array": np.random.default_rng(0).uniform(-0.3, 0.3, int(4.5 * rate)).astype(np.float32),
                "sampling_rate": rate}

    utterances = [Utterance(f"s{s}-{i}", f"s{s}", "a b c", 4.5, audio) for s in range(2) for i in range(3)]
    cases, _ = select_test_cases(utterances)

    class Judge:
        def transcribe(self, waveforms, sampling_rate):
            return ["a b" for _ in waveforms]

        def embed(self, waveform, sampling_rate):
            return np.ones(4)

    class Processor:
        sampling_rate = rate

    return cases, Judge(), Processor()


def test_run_evaluation_shards_are_disjoint_and_cover_the_cases(tmp_path):
    from valle.evaluation import GROUND_TRUTH, run_evaluation, worker_results_path

    cases, judge, processor = _ground_truth_cases()
    for number in range(2):
        assert run_evaluation(None, processor, cases, judge, judge, tmp_path, systems=[GROUND_TRUTH],
                              progress=False, shard=(number, 2)) is None
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "results.jsonl").exists()
    for number in range(2):  # each worker wrote its own cases to its own file
        ids = [json.loads(line)["utterance_id"] for line in worker_results_path(tmp_path, number).read_text().splitlines()]
        assert ids == [case.utterance.id for case in cases[number::2]]
    # A run without shard merges what the workers wrote, computes nothing again and summarises.
    summary = run_evaluation(None, processor, cases, judge, judge, tmp_path, systems=[GROUND_TRUTH], progress=False)
    assert len(summary["results"]) == len(cases) == 6 and (tmp_path / "summary.json").exists()
    assert not worker_results_path(tmp_path, 0).exists() and not worker_results_path(tmp_path, 1).exists()
    with pytest.raises(ValueError, match="shard must be"):
        run_evaluation(None, processor, cases, judge, judge, tmp_path, systems=[GROUND_TRUTH], shard=(2, 2))


def test_merge_worker_results_keeps_every_whole_record_once(tmp_path):
    from valle.evaluation import merge_worker_results, worker_results_path

    def record(utterance, seed):
        return json.dumps({"system": "valle", "utterance_id": utterance, "seed": seed, "wer": 0.5})

    assert merge_worker_results(tmp_path / "missing") == 0
    (tmp_path / "results.jsonl").write_text(record("a", 0) + "\n")
    # Worker 0 repeats a merged record (stopped between merging and deleting); worker 1 was cut off mid-line.
    worker_results_path(tmp_path, 0).write_text(record("a", 0) + "\n" + record("b", 0) + "\n")
    worker_results_path(tmp_path, 1).write_text(record("c", 0) + "\n" + record("d", 0)[:20])
    assert merge_worker_results(tmp_path) == 2
    assert sorted(read_results(tmp_path / "results.jsonl")) == ["valle|a|0", "valle|b|0", "valle|c|0"]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3
    assert not list(tmp_path.glob("results.worker*")) and merge_worker_results(tmp_path) == 0


def test_sampling_in_words():
    from valle.evaluation import describe_sampling, effective_sampling

    assert describe_sampling({"do_sample": False, "top_k": 50}) == "greedy"
    assert describe_sampling({"do_sample": True, "top_k": 10, "top_p": 0.9, "temperature": 0.7,
                              "repetition_aware_sampling": True}) == \
        "sampling top-k 10, top-p 0.9, temperature 0.7, repetition-aware"
    assert describe_sampling({"do_sample": True, "top_k": 0, "top_p": 1.0}) == "sampling from the full distribution"

    class Model:  # a call's keywords override the model's generation config
        class generation_config:
            do_sample, top_k, top_p, temperature, repetition_aware_sampling = True, 50, 1.0, 1.0, False

    assert effective_sampling(Model(), {"top_k": 10, "max_new_tokens": 5}) == {
        "do_sample": True, "top_k": 10, "top_p": 1.0, "temperature": 1.0, "repetition_aware_sampling": False}


def test_bad_input_is_named(lab_like, tmp_path, capsys):
    assert_cli_error(capsys, [_evaluate_args(lab_like, tmp_path / "a", "--text-column", "transcript")], "--text-column")
    assert_cli_error(capsys, [_evaluate_args(lab_like, tmp_path / "b", "--systems", "valle,yourtts")], "--systems: unknown")
    assert_cli_error(capsys, [_evaluate_args(lab_like, tmp_path / "c", "--asr-model", str(tmp_path / "no-such-model"))], "could not load the ASR processor .*--asr-model")
    assert_cli_error(capsys, [_evaluate_args(lab_like, tmp_path / "d", "--split", "dev")], "no split 'dev'")


def test_lab_mode_names_the_command_that_builds_what_is_missing(lab_like, tmp_path, capsys, monkeypatch):
    import valle.evaluation as evaluation

    lab = tmp_path / "lab"
    args = ["evaluate", "--lab", "--lab-dir", str(lab), "--model", lab_like["model"], "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert f"valle lab corpus --dir {lab}" in capsys.readouterr().err
    _save_dataset(lab / "corpus", _rows(24000, with_duration=True), 24000, extra_columns=("duration",))
    # The committed recogniser stands in for a missing one; without it, the command to train one is named.
    assert evaluation.lab_recognizer_dir(str(lab)) == evaluation.PUBLISHED_JUDGE
    # --split picks the lab corpus's split (validation: other held-out speakers, for tuning settings); the judges
    # are stood in for, so that this runs without the lab extra (resemblyzer).
    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "lab_setup", lambda lab_dir: (str(lab / "corpus"), None, None))
        assert main(args + ["--split", "validation"]) == 2
    assert "split 'validation'" in capsys.readouterr().err
    monkeypatch.setattr(evaluation, "PUBLISHED_JUDGE", str(tmp_path / "no-published-judge"))
    assert evaluation.lab_recognizer_dir(str(lab)) == str(lab / "judge" / "model")
    assert main(args) == 2
    assert f"valle lab judge --dir {lab}" in capsys.readouterr().err


def test_lab_mode_runs_with_the_lab_judges(lab_like, tmp_path, capsys):
    pytest.importorskip("resemblyzer", reason="the lab's speaker judge needs resemblyzer (README: the offline lab)")
    import torch
    from transformers import Wav2Vec2ForCTC

    from valle.lab.judges import build_processor, recognizer_config

    lab = tmp_path / "lab"
    _save_dataset(lab / "corpus", _rows(24000, with_duration=True), 24000, extra_columns=("duration",))
    torch.manual_seed(0)
    judge = Wav2Vec2ForCTC(recognizer_config(hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                                             num_attention_heads=2, conv_dim=[16, 16, 16, 16]))
    judge.save_pretrained(lab / "judge" / "model")
    build_processor(str(lab / "judge" / "model"))
    out = tmp_path / "o"
    assert main(["evaluate", "--lab", "--lab-dir", str(lab), "--model", lab_like["model"], "--out", str(out),
                 "--limit", "2", "--seeds", "1", "--max-new-seconds", "0.3", "--no-progress", "--save-audio"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["lab"] is True and summary["settings"]["speaker_model"] == "resemblyzer VoiceEncoder"
    # The lab's default rows include the ablations; the AR one is skipped here: this random model has no audio BOS.
    assert list(summary["settings"]["skipped_systems"]) == ["valle_no_ar_prompt"] and "skipping the row" in captured.err
    assert len(summary["results"]) == 2 * 6 and all(-1 <= r["spk"] <= 1 for r in summary["results"])
    assert "| system (lab corpus" in printed and "| WER | CER | SPK |" in printed  # the lab table adds CER
    for record in summary["results"]:  # --save-audio: every scored output, at its recorded length
        audio, rate = sf.read(out / record["audio_path"])
        assert rate == 24000 and len(audio) / rate == pytest.approx(record["audio_seconds"], abs=1e-3)


def test_valle_prompt_text_is_the_transcript_of_the_crop_not_of_the_whole_utterance():
    from valle.evaluation import VALLE, Utterance, _Case, _synthesize

    rate = 24000

    def audio(seconds):
        return lambda: {"array": np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32),
                        "sampling_rate": rate}

    utterances = [Utterance("s-1", "s", "the target sentence to say", 5.0, audio(5.0)),
                  Utterance("s-2", "s", "one two three four five six seven eight nine ten", 9.0, audio(9.0))]
    cases, _ = select_test_cases(utterances)
    case = next(c for c in cases if c.utterance.id == "s-1")
    heard = []

    class Recognizer:
        def transcribe(self, waveforms, sampling_rate):
            heard.append(len(waveforms[0]) / sampling_rate)
            return ["four five six"]

    class Processor:
        sampling_rate = rate

        def __call__(self, **kwargs):
            raise StopIteration(kwargs)

    with pytest.raises(StopIteration) as stop:
        _synthesize(None, Processor(), _Case(case, Processor(), None, 3.0, Recognizer()), VALLE, {})
    kwargs = stop.value.args[0]
    assert kwargs["prompt_text"] == "four five six" and len(kwargs["prompt_audio"]) == 3 * rate
    assert heard == [3.0]  # the recogniser heard exactly the crop


# ---------------------------------------------------------------------------------------------------------------------
# The ablation row: the AR without the acoustic prompt

def test_ablation_ar_reads_the_text_alone_and_the_nar_gets_the_valle_inputs():
    import torch
    from transformers import BatchFeature

    from modeling_valle import VallEGenerationOutput
    from valle.evaluation import VALLE, VALLE_NO_AR_PROMPT, _Case, _synthesize

    rate = 24000
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 9 * rate).astype(np.float32)
    utterances = [Utterance("s-1", "s", "the target sentence", 5.0, lambda: {"array": noise[: 5 * rate],
                                                                               "sampling_rate": rate}),
                  Utterance("s-2", "s", "a b c d e f g h i j", 9.0, lambda: {"array": noise, "sampling_rate": rate})]
    cases, _ = select_test_cases(utterances)
    case = next(c for c in cases if c.utterance.id == "s-1")
    calls = []

    class Recognizer:
        def transcribe(self, waveforms, sampling_rate):
            return ["d e f"]

    class Processor:
        sampling_rate = rate

        def __call__(self, text, prompt_audio=None, prompt_text=None, sampling_rate=None):
            calls.append(("processor", text, prompt_text, None if prompt_audio is None else len(prompt_audio)))
            words = (prompt_text.split() if prompt_text else []) + text.split()
            data = {"input_ids": torch.arange(len(words))[None], "attention_mask": torch.ones(1, len(words))}
            if prompt_audio is not None:
                data.update(prompt_codes=torch.zeros(1, 4, 2, dtype=torch.long),
                            prompt_attention_mask=torch.ones(1, 4))
            return BatchFeature(data)

        def batch_decode(self, codes):
            calls.append(("decode", codes[0].tolist()))
            return [np.zeros(len(codes[0]) * 320, dtype=np.float32)]

    class Model:
        def parameters(self):
            return iter([torch.zeros(1)])

        def generate(self, **kwargs):
            raise AssertionError("the ablation runs the stages apart")

        def generate_ar(self, **kwargs):
            calls.append(("ar", sorted(kwargs), kwargs["input_ids"].shape[1]))
            return VallEGenerationOutput(sequences=torch.tensor([[3, 5, 7, -100]]), sequence_lengths=torch.tensor([3]),
                                         finished_with_eos=torch.tensor([True]))

        def generate_nar(self, first_codebook, **kwargs):
            calls.append(("nar", sorted(kwargs), kwargs["input_ids"].shape[1], first_codebook.tolist()))
            return torch.stack([first_codebook, first_codebook + 1], dim=-1)

    valle_case = _Case(case, Processor(), None, 3.0, Recognizer())
    audio, spk_audio, seconds, capped = _synthesize(Model(), Processor(), valle_case, VALLE_NO_AR_PROMPT,
                                                    {"top_k": 5})
    assert calls == [
        ("processor", "the target sentence", "d e f", 3 * rate),  # the VALL-E inputs, for the NAR
        ("processor", "the target sentence", None, None),  # the text alone, for the AR
        ("ar", ["attention_mask", "input_ids", "return_dict_in_generate", "top_k"], 3),
        ("nar", ["attention_mask", "input_ids", "prompt_attention_mask", "prompt_codes"], 6, [[3, 5, 7, -100]]),
        ("decode", [[3, 4], [5, 6], [7, 8]]),
    ]
    assert audio is spk_audio and len(audio) == 3 * 320 and seconds == 3 * 320 / rate and capped is False
    # The VALL-E row's prompt crop and transcript are the very same.
    calls.clear()
    with pytest.raises(AssertionError, match="stages apart"):
        _synthesize(Model(), Processor(), valle_case, VALLE, {})
    assert calls == [("processor", "the target sentence", "d e f", 3 * rate)]


@pytest.fixture(scope="module")
def bos_model(lab_like, tmp_path_factory):
    """The lab_like bundle with a random VALL-E that has an audio BOS (so its AR can start without a prompt)."""
    import torch

    from configuration_valle import VallEConfig
    from modeling_valle import VallEForConditionalCodecGeneration

    folder = tmp_path_factory.mktemp("bos") / "model"
    shutil.copytree(lab_like["model"], folder)
    config = VallEConfig.from_pretrained(folder, use_audio_bos=True, tie_ar_lm_head=False)
    torch.manual_seed(0)
    VallEForConditionalCodecGeneration(config).eval().save_pretrained(folder)
    return str(folder)


def test_ablation_row_is_sampled_per_seed_scored_like_valle_and_resumable(lab_like, bos_model, tmp_path, capsys):
    setup = dict(lab_like, model=bos_model)
    out = tmp_path / "run"
    args = _evaluate_args(setup, out, "--limit", "2", "--seeds", "2", "--systems", "valle,valle_no_ar_prompt")
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert [(row["title"], row["seeds"]) for row in summary["table"]] == [
        ("VALL-E", [0, 1]), ("VALL-E, AR without acoustic prompt (ablation)", [0, 1])]
    assert summary["settings"]["skipped_systems"] == {}
    assert "| VALL-E, AR without acoustic prompt (ablation) | " in printed
    results = summary["results"]
    assert len(results) == 2 * 2 * 2
    valle = {(r["utterance_id"], r["seed"]): r for r in results if r["system"] == "valle"}
    ablation = {(r["utterance_id"], r["seed"]): r for r in results if r["system"] == "valle_no_ar_prompt"}
    assert sorted(valle) == sorted(ablation)
    for key, record in ablation.items():
        # The same test case as the VALL-E row: the same crop of the same other utterance, the same transcript.
        for name in ("prompt_id", "prompt_start", "prompt_text", "reference", "speaker_id"):
            assert record[name] == valle[key][name], name
        assert record["prompt_id"] != record["utterance_id"]
        assert record["wer"] == record["word_errors"] / record["reference_words"] and -1 <= record["spk"] <= 1
        assert 0 < record["audio_seconds"] <= 0.3 + 0.02 and record["generated_seconds"] == record["audio_seconds"]
    # Each seed samples its own outputs.
    assert [r["spk"] for k, r in ablation.items() if k[1] == 0] != [r["spk"] for k, r in ablation.items() if k[1] == 1]

    # Resumable: a second run finds everything done; a run with one more seed computes only its results.
    assert main(args) == 0
    assert "resuming: 8 of 8 results" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["results"] == results
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(line for line in lines if "valle_no_ar_prompt" not in line) + "\n")
    assert main(args) == 0
    assert "resuming: 4 of 8 results" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["results"] == results  # the same draws again


def test_ablation_row_is_skipped_for_models_without_an_audio_bos(lab_like, tmp_path, capsys):
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(_evaluate_args(lab_like, out, "--limit", "1", "--systems", "ground_truth,valle_no_ar_prompt")) == 0
    captured = capsys.readouterr()
    assert re.search(r"skipping the row 'VALL-E, AR without acoustic prompt \(ablation\)'.*use_audio_bos=False",
                     captured.err)
    summary = json.loads((out / "summary.json").read_text())
    assert [row["system"] for row in summary["table"]] == ["ground_truth"]
    assert summary["settings"]["systems"] == ["ground_truth"]
    assert summary["settings"]["skipped_systems"] == {
        "valle_no_ar_prompt": "the model has no audio BOS token (config.use_audio_bos=False)"}
    assert ("VALL-E, AR without acoustic prompt (ablation): not computed, the model has no audio BOS token"
            in captured.out)
    # Asked for alone, there is nothing to do: one clean error line.
    assert_cli_error(capsys, [_evaluate_args(lab_like, tmp_path / "alone", "--systems", "valle_no_ar_prompt")],
                     "nothing to evaluate: valle_no_ar_prompt is the only system asked for")


def test_nar_ablation_row_uses_the_recordings_first_codebook_once(lab_like, tmp_path, capsys):
    """The paper's NAR ablation: codebook 1 of the recording's own codes, the NAR fills the rest with the VALL-E
    row's prompts; deterministic, so scored once (no seeds), as long as the recording, and reproducible by hand."""
    import torch

    from modeling_valle import VallEForConditionalCodecGeneration
    from processing_valle import VallEProcessor
    from valle.evaluation import load_utterances

    out = tmp_path / "nar"
    args = _evaluate_args(lab_like, out, "--limit", "2", "--seeds", "2", "--save-audio",
                          "--systems", "valle,nar_ground_truth_first,codec_first_codebook")
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(row["title"], row["seeds"]) for row in summary["table"]] == [
        ("VALL-E", [0, 1]), ("NAR on ground-truth codebook 1, both prompts (ablation)", [None]),
        ("codec, ground-truth codebook 1 alone (no NAR)", [None])]
    results = summary["results"]
    valle = {r["utterance_id"]: r for r in results if r["system"] == "valle" and r["seed"] == 0}
    ablation = [r for r in results if r["system"] == "nar_ground_truth_first"]
    assert len(ablation) == 2 and sorted(r["utterance_id"] for r in ablation) == sorted(valle)
    model = VallEForConditionalCodecGeneration.from_pretrained(lab_like["model"]).eval()
    processor = VallEProcessor.from_pretrained(lab_like["model"])
    rate = processor.sampling_rate
    for record in ablation:
        for name in ("prompt_id", "prompt_start", "prompt_text"):
            assert record[name] == valle[record["utterance_id"]][name], name
        assert record["seed"] is None and record["reached_cap"] is False
        written, _ = sf.read(out / record["audio_path"], dtype="float32")
        # By hand: the recording's codes, its codebook 1 through generate_nar with the crop and its transcript.
        (target,) = [u for u in load_utterances(lab_like["data"]) if u.id == record["utterance_id"]]
        (source,) = [u for u in load_utterances(lab_like["data"]) if u.id == record["prompt_id"]]
        start = int(round(record["prompt_start"] * rate))
        crop = source.load(rate)[start : start + 3 * rate]
        codes = processor.encode_audio(target.load(rate), sampling_rate=rate)
        inputs = processor(text=target.text, prompt_audio=crop, prompt_text=record["prompt_text"] or None,
                           sampling_rate=rate)
        filled = model.generate_nar(**inputs, first_codebook=codes[None, :, 0])
        assert torch.equal(filled[0, :, 0], codes[:, 0])
        expected = processor.batch_decode([filled[0]])[0]
        assert len(written) == len(expected) and record["audio_seconds"] == round(len(expected) / rate, 3)
        np.testing.assert_allclose(written, expected, atol=2e-4)  # PCM_16 on disk
        # Its reference row: the same codebook 1 decoded with the other codebooks left out.
        (alone,) = [r for r in results if r["system"] == "codec_first_codebook"
                    and r["utterance_id"] == record["utterance_id"]]
        written, _ = sf.read(out / alone["audio_path"], dtype="float32")
        expected = processor._decode_codes(codes[:, :1]).numpy()[: len(target.load(rate))]
        assert alone["seed"] is None and len(written) == len(expected)
        np.testing.assert_allclose(written, expected, atol=2e-4)


def test_default_systems_full_scale_and_lab():
    import argparse

    from valle.commands.evaluate import add_arguments
    from valle.evaluation import (CODEC_FIRST_CODEBOOK, DEFAULT_LAB_SYSTEMS, DEFAULT_SYSTEMS, NAR_GROUND_TRUTH_FIRST,
                                  SYSTEMS, VALLE_NO_AR_PROMPT)

    assert DEFAULT_SYSTEMS == ("ground_truth", "codec_resynthesis", "valle", "valle_continual")
    assert DEFAULT_LAB_SYSTEMS == SYSTEMS == DEFAULT_SYSTEMS + (VALLE_NO_AR_PROMPT, NAR_GROUND_TRUTH_FIRST,
                                                                CODEC_FIRST_CODEBOOK)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--model", "m"]).systems is None  # evaluate() then picks by --lab
