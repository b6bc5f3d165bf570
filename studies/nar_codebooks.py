"""How much do the NAR's codebooks help? Decode the lab's test utterances with the first k codebooks only.

    python studies/nar_codebooks.py --model valle/assets/lab-valle --lab-dir runs/lab24eval \
        --out lab_artifacts/nar_codebooks.json

For each test case of `valle evaluate --lab` (same selection), two rows per k in `--codebooks`:
- `codec`: the recording's own codes, the first k codebooks decoded (k = 8: the codec resynthesis row of
  `valle evaluate`; k = 1: its "ground-truth codebook 1 alone" row);
- `nar`: codebook 1 is the recording's own, the NAR (greedy) fills codebooks 2-8 with the VALL-E row's prompts (the
  "NAR on ground-truth codebook 1" row of `valle evaluate` at k = 8), and only the first k are decoded;
- `nar_expected`: the same NAR passes, but codebooks 2..k are decoded as the NAR's expected codec vector (each
  codebook's vectors weighted by the NAR's probabilities) instead of the vector of its likeliest code. Where the NAR
  is sure, this is the greedy decode; where it hesitates among many codes, the expected vector shrinks towards the
  codebook's mean. If this row reads like `codec` at k = 1, the NAR's distributions hold no more about the
  residuals than their average does.
The lab codec was trained with quantizer dropout, so it decodes any number of codebooks. If `nar` at k = 8 reads
worse than `codec` at k = 1, the NAR's codebooks add more error than they remove; the k at which `nar` is best
says which of them do. The output is a JSON with every transcript and a markdown table (WER / CER of the lab
recogniser, speaker similarity to the prompt, in the units of `valle evaluate`). No sampling: one pass suffices.

With `--data` (prepared held-out data, e.g. runs/lab24/tts/data/test) and `--train-data`, it also measures the NAR
teacher-forced, codebook by codebook (prompts: other utterances of the same speaker, as at inference): its
cross-entropy and top-1 accuracy against a unigram model of that codebook (code frequencies of `--train-data`), and
its cross-entropy when the codebooks below are shuffled in time (does it use them?). A NAR whose loss is barely
below the unigram's has learned little about that codebook from the ones below it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unigram_log_probs(dataset, num_codebooks: int, codebook_size: int, rows: int = 1500, seed: int = 0):
    """Log-frequencies of each code in each codebook over (up to `rows` random rows of) prepared data, add-one
    smoothed: an array of shape (num_codebooks, codebook_size)."""
    import numpy as np

    if len(dataset) > rows:
        dataset = dataset.shuffle(seed=seed).select(range(rows))
    counts = np.ones((num_codebooks, codebook_size))
    for codes in dataset["codes"]:
        codes = np.asarray(codes)
        for level in range(num_codebooks):
            counts[level] += np.bincount(codes[:, level], minlength=codebook_size)
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def shuffle_below(labels, stage: int, generator):
    """`labels` with codebooks 0..stage-1 of each item's frames put in a random time order (the same order for all
    of them; padding untouched): what the NAR gets when the codes below carry no information about this frame."""
    import torch

    shuffled = labels.clone()
    for item in range(labels.shape[0]):
        length = int((labels[item, :, 0] != -100).sum())
        order = torch.randperm(length, generator=generator)
        shuffled[item, :length, :stage] = labels[item, order, :stage]
    return shuffled


def teacher_forced(model, dataset, unigram, batch_size: int = 8, seed: int = 0) -> dict:
    """Per NAR codebook (2..num_codebooks): mean cross-entropy and top-1 accuracy of the NAR on `dataset` (prepared
    data), teacher-forced, with same-speaker prompts; its cross-entropy when the codebooks below are shuffled in
    time (`shuffle_below`); and the unigram model's cross-entropy on the same tokens."""
    import numpy as np
    import torch

    from valle.collator import VallEDataCollator

    collator = VallEDataCollator(pad_token_id=model.config.pad_token_id or 0, num_codebooks=model.config.num_codebooks,
                                 prompt_dataset=dataset, prompt_max_frames=model.config.nar_prompt_max_frames,
                                 seed=seed)
    keys = ("input_ids", "attention_mask", "labels", "prompt_codes", "prompt_attention_mask")
    scores = {}
    for stage in range(1, model.config.num_codebooks):
        loss = correct = unigram_loss = tokens = shuffled_loss = 0.0
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            inputs = {key: batch[key] for key in keys if key in batch}
            with torch.no_grad():
                output = model(**inputs, nar_stage=stage)
                inputs["labels"] = shuffle_below(inputs["labels"], stage, generator)
                shuffled = model(**inputs, nar_stage=stage)
            shuffled_loss += shuffled.nar_loss.item() * int((shuffled.nar_labels != -100).sum())
            mask = output.nar_labels != -100
            labels = output.nar_labels[mask]
            log_probs = torch.log_softmax(output.nar_logits[mask].float(), dim=-1)
            loss += -log_probs.gather(-1, labels[:, None]).sum().item()
            correct += (log_probs.argmax(-1) == labels).sum().item()
            unigram_loss += -float(np.sum(unigram[stage][labels.numpy()]))
            tokens += labels.numel()
        scores[stage + 1] = {"nar_loss": round(loss / tokens, 3), "nar_accuracy": round(correct / tokens, 4),
                             "nar_loss_below_shuffled": round(shuffled_loss / tokens, 3),
                             "unigram_loss": round(unigram_loss / tokens, 3), "tokens": int(tokens)}
    return scores


def nar_with_probabilities(model, inputs, first_codebook):
    """`generate_nar`'s codes for one item (frames, codebooks) and the NAR's distribution over each codebook 2..K
    (a dict: 0-based codebook -> (frames, codebook_size) probabilities), read from the very passes that chose
    the codes: the model's NAR forward is wrapped for the call and keeps the logits of the last `frames` slots
    (the target's; the prompt's come before them)."""
    frames = first_codebook.shape[1]
    probabilities = {}
    forward = model._nar_forward

    def keeping(*args, **kwargs):
        logits = forward(*args, **kwargs)
        codebook = kwargs["codebook"] if "codebook" in kwargs else args[-1]
        probabilities[codebook] = logits[0, logits.shape[1] - frames :].float().softmax(dim=-1)
        return logits

    model._nar_forward = keeping
    try:
        codes = model.generate_nar(**inputs, first_codebook=first_codebook)[0]  # generate_nar runs under no_grad
    finally:
        del model._nar_forward  # the class's method again
    return codes, probabilities


def decode_expected(codec, first_codes, probabilities, codebooks: int):
    """A waveform from codebook 1's codes plus, for codebooks 2..`codebooks`, the expected codec vector under
    `probabilities` (see `nar_with_probabilities`): the quantised latent that transformers' `EncodecModel` sums
    from its codebooks, with probabilities in place of one-hot codes, through the codec's decoder."""
    import torch

    layers = codec.quantizer.layers
    with torch.no_grad():
        latent = layers[0].codebook.embed[first_codes.long()]  # (frames, codebook_dim)
        for level in range(1, codebooks):
            latent = latent + probabilities[level] @ layers[level].codebook.embed
        return codec.decoder(latent.T[None]).reshape(-1).float()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="valle/assets/lab-valle")
    parser.add_argument("--lab-dir", default="runs/lab")
    parser.add_argument("--codebooks", default="1,2,4,8", help="comma-separated k: decode the first k codebooks")
    parser.add_argument("--limit", type=int, default=16, help="test cases (as `valle evaluate --limit`)")
    parser.add_argument("--data", help="prepared held-out data for the teacher-forced part (needs --train-data)")
    parser.add_argument("--train-data", help="prepared training data: the unigram model's code frequencies")
    parser.add_argument("--data-rows", type=int, default=120, help="rows of --data used (evenly spaced)")
    parser.add_argument("--out", required=True, help="JSON file for every transcript and the summary")
    args = parser.parse_args(argv)
    if bool(args.data) != bool(args.train_data):
        parser.error("--data and --train-data go together (the held-out data and the unigram model's data)")

    import torch

    from valle.evaluation import (
        _Case, corpus_error_rate, cosine, error_counts, lab_setup, load_utterances, select_test_cases,
    )
    from valle.synthesis import load_model_and_processor

    model, processor = load_model_and_processor(args.model)
    total = model.config.num_codebooks
    try:
        levels = sorted({int(k) for k in args.codebooks.split(",")})
    except ValueError:
        levels = []
    if not levels or levels[0] < 1 or levels[-1] > total:
        parser.error(f"--codebooks: each k must be in 1..{total}, got {args.codebooks!r}")
    if not hasattr(getattr(processor.codec, "quantizer", None), "layers"):
        parser.error("the expected-vector row needs the codec as transformers' EncodecModel (the lab's and "
                     "facebook/encodec_24khz are)")
    corpus, recognizer, speaker_judge = lab_setup(args.lab_dir)
    cases, _ = select_test_cases(load_utterances(corpus, split="test"), limit=args.limit)
    rate = processor.sampling_rate
    records = []
    top_probability = {level: [] for level in range(2, total + 1)}  # the NAR's probability of its greedy pick
    for number, test_case in enumerate(cases, 1):
        case = _Case(test_case, processor, speaker_judge, 3.0, recognizer)
        target = test_case.utterance
        inputs = processor(text=target.text, prompt_audio=case.prompt(), prompt_text=case.prompt_transcript() or None,
                           sampling_rate=rate)
        truth = case.codes("target")
        predicted, probabilities = nar_with_probabilities(model, inputs, truth[None, :, 0])
        if number == 1:  # one-hot probabilities must give the codec's own decode, or the expected row means nothing
            one_hot = {level: torch.nn.functional.one_hot(predicted[:, level], model.config.codebook_size).float()
                       for level in range(1, total)}
            if not torch.allclose(decode_expected(processor.codec, truth[:, 0], one_hot, total),
                                  processor._decode_codes(predicted), atol=1e-4):
                raise RuntimeError("decode_expected does not decode one-hot codes as the codec does: this codec "
                                   "sums its codebooks otherwise, and the expected-vector row would mean nothing.")
        for level, p in probabilities.items():
            top_probability[level + 1] += p.max(dim=-1).values.tolist()
        prompt_embedding = speaker_judge.embed(case.prompt(), rate)
        for row, codes in (("codec", truth), ("nar", predicted), ("nar_expected", None)):
            for k in levels:
                if codes is None:
                    waveform = decode_expected(processor.codec, truth[:, 0], probabilities, k)
                else:
                    waveform = processor._decode_codes(codes[:, :k])
                waveform = waveform.numpy()[: len(case.target())]
                heard = recognizer.transcribe([waveform], rate)[0]
                records.append({"row": row, "codebooks": k, "utterance_id": target.id, "reference": target.text,
                                "hypothesis": heard, **error_counts(target.text, heard),
                                "spk": cosine(prompt_embedding, speaker_judge.embed(waveform, rate))})
        print(f"{number}/{len(cases)} {target.id}", file=sys.stderr, flush=True)
    summary = {}
    for row in ("codec", "nar", "nar_expected"):
        for k in levels:
            chosen = [r for r in records if r["row"] == row and r["codebooks"] == k]
            summary[f"{row}_{k}"] = {
                "row": row, "codebooks": k,
                "wer": round(corpus_error_rate(chosen, "word"), 1),
                "cer": round(corpus_error_rate(chosen, "char"), 1),
                "spk": round(sum(r["spk"] for r in chosen) / len(chosen), 3),
            }
    forced = None
    if args.data:
        import datasets

        held_out = datasets.load_from_disk(args.data)
        held_out = held_out.select(range(0, len(held_out), max(1, len(held_out) // args.data_rows)))
        unigram = unigram_log_probs(datasets.load_from_disk(args.train_data), total, model.config.codebook_size)
        forced = teacher_forced(model.float().eval(), held_out, unigram)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"model": args.model, "lab_dir": args.lab_dir, "test_cases": len(cases), "summary": summary,
                   "nar_top_probability": {level: round(sum(v) / len(v), 4) for level, v in top_probability.items()},
                   "teacher_forced": forced, "data": args.data, "train_data": args.train_data, "records": records},
                  handle, indent=1)
    print("| codebooks 2-8 from | codebooks decoded | WER | CER | SPK |\n|---|---|---|---|---|")
    sources = {"codec": "the recording", "nar": "the NAR", "nar_expected": "the NAR, expected vectors"}
    for row in summary.values():
        source = sources[row["row"]]
        print(f"| {source} | {row['codebooks']} | {row['wer']} | {row['cer']} | {row['spk']} |")
    print("\nthe NAR's probability of its greedy pick, mean over frames, codebooks 2..: "
          + ", ".join(f"{sum(v) / len(v):.3f}" for v in top_probability.values()))
    if forced:
        print("\n| codebook | NAR loss | NAR top-1 accuracy | NAR loss, codebooks below shuffled | unigram loss |\n"
              "|---|---|---|---|---|")
        for level, row in forced.items():
            print(f"| {level} | {row['nar_loss']} | {row['nar_accuracy']:.3f} | {row['nar_loss_below_shuffled']} | "
                  f"{row['unigram_loss']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
