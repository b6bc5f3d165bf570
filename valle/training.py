"""Training VALL-E with 🤗 `Trainer`: token-budget batches, AR / NAR / both, per-codebook accuracy, a model card.

The pieces are the ordinary ones (`TrainingArguments`, `Trainer`, Accelerate underneath), so everything Trainer
offers works unchanged: bf16/fp16, gradient checkpointing and accumulation, `resume_from_checkpoint`, DDP via
`torchrun` or `accelerate launch`, DeepSpeed and FSDP configs. What VALL-E adds lives in `VallETrainer`:

- batches by acoustic-token budget (`valle.sampler.TokenBudgetBatchSampler`), sharded per rank, epoch-seeded, and
  skipped correctly when a run resumes in the middle of an epoch;
- evaluation that scores every NAR stage (not one random stage) with fixed random draws, and reports the loss
  and the token accuracy of each codebook (`eval_acc_codebook_1` is the AR's, the others the NAR's);
- `train_mode`: "both", "ar" or "nar" (the other decoder is frozen and skipped).

Paper recipe (SPEC section 5): AdamW, peak learning rate 5e-4 reached after a linear warm-up over the first 32k of
800k updates (4%), then linear decay; ~6k acoustic frames per GPU. `paper_training_defaults` scales this to any
run: the warm-up is the same fraction of the run's total steps.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainingArguments

from .collator import VallEDataCollator
from .sampler import TokenBudgetBatchSampler

logger = logging.getLogger(__name__)

TRAIN_MODES = ("both", "ar", "nar")
LENGTH_COLUMN = "num_frames"

# The paper's optimisation recipe, as TrainingArguments values (the warm-up as a fraction of the run).
PAPER_TRAINING_DEFAULTS = {
    "learning_rate": 5e-4,
    "warmup_steps": 32_000 / 800_000,
    "lr_scheduler_type": "linear",
    "optim": "adamw_torch",
    "max_grad_norm": 1.0,
}
PAPER_MAX_TOKENS = 6_000


def paper_training_defaults() -> dict[str, Any]:
    """TrainingArguments values for the paper's AdamW + warm-up + linear decay, scaled to the run's length."""
    return dict(PAPER_TRAINING_DEFAULTS)


def set_train_mode(model, mode: str) -> None:
    """
    Train both decoders ("both"), the AR only ("ar") or the NAR only ("nar").

    The loss weight of the other decoder is set to 0 (so `forward` skips it) and its parameters are frozen, so that
    the optimizer, DDP and checkpoints agree on what is trained. Weights already 0 in the config stay 0.
    """
    if mode not in TRAIN_MODES:
        raise ValueError(f"`train_mode` must be one of {TRAIN_MODES}, got {mode!r}.")
    config = model.config
    if mode == "nar" and not config.has_nar:
        raise ValueError("train_mode='nar' needs a model with at least 2 codebooks (there is no NAR otherwise).")
    if mode == "ar":
        config.nar_loss_weight = 0.0
        if config.ar_loss_weight == 0:
            config.ar_loss_weight = 1.0
    elif mode == "nar":
        config.ar_loss_weight = 0.0
        if config.nar_loss_weight == 0:
            config.nar_loss_weight = 1.0
    else:  # both: a decoder switched off by an earlier AR-only / NAR-only run trains again
        for name in ("ar_loss_weight", "nar_loss_weight"):
            if getattr(config, name) == 0 and (name == "ar_loss_weight" or config.has_nar):
                logger.warning(f"train_mode='both': {name} was 0 (an earlier single-decoder run); training it again.")
                setattr(config, name, 1.0)
    for name, parameter in model.named_parameters():
        skipped = (name.startswith("ar_") and config.ar_loss_weight == 0) or (
            name.startswith("nar_") and config.nar_loss_weight == 0
        )
        parameter.requires_grad_(not skipped)


class VallETrainer(Trainer):
    """
    `Trainer` for `VallEForConditionalCodecGeneration`, with acoustic-token-budget batches.

    Args (besides Trainer's):
        max_tokens (`int`, defaults to 6000): per-device batch budget, `utterances x longest` in codec frames.
            `per_device_train_batch_size` is then only a cap on utterances per batch (see `max_batch_size`).
        max_batch_size (`int`, *optional*): cap on utterances per batch.
        eval_max_tokens (`int`, *optional*): budget of evaluation batches (default: `max_tokens`).
        length_column (`str`, defaults to "num_frames"): the column with each utterance's frame count.
        alignment_examples (`int`, defaults to 16): each evaluation also measures, on this many evaluation
            utterances (evenly spaced), whether the AR has learnt to read its text (`valle.alignment`):
            `eval_ar_alignment_heads` and the best head's `eval_ar_best_head_{monotonicity,text_mass,sharpness}`,
            logged beside the eval loss. 0 turns it off; it is skipped when the AR is not trained and under
            FSDP / DeepSpeed (sharded weights).

    The datasets must be prepared ones (`valle.data.prepare_dataset`): `input_ids`, `codes`, `num_frames`.
    `data_collator` defaults to `VallEDataCollator(pad_token_id=config.pad_token_id)`.
    """

    def __init__(
        self,
        *args,
        max_tokens: int = PAPER_MAX_TOKENS,
        max_batch_size: int | None = None,
        eval_max_tokens: int | None = None,
        length_column: str = LENGTH_COLUMN,
        eval_data_collator=None,
        alignment_examples: int = 16,
        **kwargs,
    ):
        model = kwargs.get("model", args[0] if args else None)
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None and training_args.remove_unused_columns:
            # The collator reads columns `forward` does not take (codes, speaker, id): Trainer must keep them.
            training_args.remove_unused_columns = False
        if kwargs.get("data_collator") is None and model is not None:
            kwargs["data_collator"] = VallEDataCollator(
                pad_token_id=model.config.pad_token_id or 0, num_codebooks=model.config.num_codebooks
            )
        if kwargs.get("compute_metrics") is not None:
            raise ValueError(
                "VallETrainer computes its own metrics (eval loss and per-codebook token accuracy); leave "
                "`compute_metrics` out."
            )
        kwargs["compute_metrics"] = _accuracy_from_counts
        super().__init__(*args, **kwargs)
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size
        self.eval_max_tokens = eval_max_tokens or max_tokens
        self.length_column = length_column
        if alignment_examples < 0:
            raise ValueError(f"VallETrainer: alignment_examples must be >= 0 (0 = off), got {alignment_examples}.")
        self.alignment_examples = alignment_examples
        # Evaluation may need its own collator: same-speaker prompts for unseen eval speakers come from eval data.
        self.eval_data_collator = eval_data_collator or self.data_collator
        self._train_batch_sampler: TokenBudgetBatchSampler | None = None

    # ---- data ------------------------------------------------------------------------------------------------

    def _lengths(self, dataset, description: str) -> list[int]:
        columns = getattr(dataset, "column_names", None)
        if columns is None or self.length_column not in columns:
            raise ValueError(
                f"The {description} dataset needs a {self.length_column!r} column (frames per utterance) for "
                "token-budget batches. Prepare it with `valle prepare` / `valle.data.prepare_dataset`, or add it: "
                "dataset.map(lambda row: {'num_frames': len(row['codes'])})."
            )
        return dataset[self.length_column]

    def _budget_dataloader(self, dataset, sampler: TokenBudgetBatchSampler, training: bool):
        from torch.utils.data import DataLoader

        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator if training else self.eval_data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if self.args.dataloader_num_workers > 0 else None,
        )
        prepared = self.accelerator.prepare(loader)
        # The sampler already gives each rank its own batches; Accelerate's `BatchSamplerShard` would split them
        # again and lose data. Make that wrapper a pass-through (as Trainer does for its own rank-aware sampler).
        shard = getattr(prepared, "batch_sampler", None)
        if shard is not None and getattr(shard, "batch_sampler", None) is sampler:
            shard.num_processes = 1
            shard.process_index = 0
        return prepared

    def get_train_dataloader(self):
        if self.train_dataset is None:
            raise ValueError("VallETrainer: training needs a train_dataset.")
        sampler = TokenBudgetBatchSampler(
            self._lengths(self.train_dataset, "training"),
            max_tokens=self.max_tokens,
            num_replicas=max(1, self.args.world_size),
            rank=self.args.process_index if self.args.world_size > 1 else 0,
            shuffle=True,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            max_batch_size=self.max_batch_size,
        )
        self._train_batch_sampler = sampler
        return self._budget_dataloader(self.train_dataset, sampler, training=True)

    def get_eval_dataloader(self, eval_dataset=None):
        if eval_dataset is None and self.eval_dataset is None:
            raise ValueError("VallETrainer: evaluation needs an eval_dataset.")
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        sampler = TokenBudgetBatchSampler(
            self._lengths(dataset, "evaluation"),
            max_tokens=self.eval_max_tokens,
            num_replicas=max(1, self.args.world_size),
            rank=self.args.process_index if self.args.world_size > 1 else 0,
            shuffle=False,
            max_batch_size=self.max_batch_size,
        )
        return self._budget_dataloader(dataset, sampler, training=False)

    def _run_epoch(self, *args, **kwargs):
        # Trainer checks `max_steps` only after a step, so resuming a run that already reached it would train one
        # step more (and save checkpoint-<max_steps + 1>): a finished run stays finished.
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return None
        # Trainer (5.24) reaches a batch sampler's `set_epoch` through Accelerate's wrappers, also in a resumed
        # epoch; setting it here as well keeps the epoch order right should that chain of wrappers change.
        epoch = kwargs.get("epoch")
        if self._train_batch_sampler is not None and epoch is not None:
            self._train_batch_sampler.set_epoch(epoch)
        return super()._run_epoch(*args, **kwargs)

    # ---- evaluation ------------------------------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys,
                                   metric_key_prefix=metric_key_prefix)
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        alignment = self._alignment_metrics(eval_dataset if eval_dataset is not None else self.eval_dataset,
                                            metric_key_prefix)
        if alignment:
            self.log(alignment)
            metrics.update(alignment)
        return metrics

    def _alignment_metrics(self, dataset, prefix: str) -> dict[str, float]:
        """The AR's text-reading statistics on a few evaluation utterances (see `alignment_examples`)."""
        from valle.alignment import ar_alignment, evenly_spaced

        if isinstance(dataset, dict) or not hasattr(dataset, "select"):
            return {}  # several evaluation sets are each scored in their own `evaluate` call; other datasets: skipped
        model = self.accelerator.unwrap_model(self.model)
        if (self.alignment_examples == 0 or model.config.ar_loss_weight <= 0 or self.is_fsdp_enabled
                or self.is_deepspeed_enabled or len(dataset) == 0):
            return {}
        examples = [example for example in evenly_spaced(dataset, self.alignment_examples)
                    if len(example["codes"]) >= 2]
        if not examples:
            return {}
        best = ar_alignment(model, examples)
        return {
            f"{prefix}_ar_alignment_heads": float(best["alignment_heads"]),
            **{f"{prefix}_ar_best_head_{key}": best["best"][key] for key in ("monotonicity", "text_mass", "sharpness")},
        }

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """
        Loss and per-codebook token accuracy of one batch, with every NAR stage scored (training draws one stage
        at random). Random draws (the NAR's in-utterance prompt) come from `args.seed`, so evaluating the same
        weights twice gives the same numbers.

        Returns `(loss, counts, dummy)`: `counts` is `[correct_1..K, total_1..K]`, which Trainer gathers across
        processes and `compute_metrics` turns into accuracies.
        """
        inputs = self._prepare_inputs(inputs)
        config = self.accelerator.unwrap_model(model).config
        num_codebooks = config.num_codebooks
        device = inputs["input_ids"].device
        correct = torch.zeros(num_codebooks, device=device, dtype=torch.float64)
        total = torch.zeros(num_codebooks, device=device, dtype=torch.float64)
        ar_weight, nar_weight = config.ar_loss_weight, config.nar_loss_weight
        stages = list(range(1, num_codebooks)) if nar_weight > 0 else [None]
        ar_loss = torch.zeros((), device=device)
        nar_losses = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]), contextlib.ExitStack() as stack:
            # Only the CPU generator (the one forward's stage/prefix draws use, and the only one fork_rng restores
            # here): `torch.manual_seed` would also reset the GPU generators and repeat dropout after each eval.
            torch.random.default_generator.manual_seed(self.args.seed)
            stack.callback(lambda: setattr(config, "ar_loss_weight", ar_weight))
            for position, stage in enumerate(stages):
                if position == 1:
                    config.ar_loss_weight = 0.0  # the AR's part does not depend on the stage: run it once
                kwargs = dict(inputs)
                if stage is not None:
                    kwargs["nar_stage"] = stage
                with self.compute_loss_context_manager():
                    outputs = model(**kwargs)
                if outputs.ar_loss is not None:
                    ar_loss = outputs.ar_loss.detach().float()
                    _count(outputs.ar_logits, outputs.ar_labels, 0, correct, total)
                if outputs.nar_loss is not None:
                    nar_losses.append(outputs.nar_loss.detach().float())
                    _count(outputs.nar_logits, outputs.nar_labels, stage, correct, total)
        loss = ar_weight * ar_loss
        if nar_losses:
            loss = loss + nar_weight * torch.stack(nar_losses).mean()
        if prediction_loss_only:
            return loss, None, None
        counts = torch.cat([correct, total])[None]
        return loss, counts, torch.zeros(1, device=device)


def _count(logits, labels, codebook: int, correct: torch.Tensor, total: torch.Tensor) -> None:
    valid = labels != -100
    # The AR also predicts end-of-speech (the last class); it counts as a token of codebook 1.
    hits = (logits.argmax(dim=-1) == labels) & valid
    correct[codebook] += hits.sum()
    total[codebook] += valid.sum()


def _accuracy_from_counts(prediction: EvalPrediction) -> dict[str, float]:
    counts = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1, prediction.predictions.shape[-1])
    counts = counts.sum(axis=0)
    num_codebooks = counts.shape[0] // 2
    correct, total = counts[:num_codebooks], counts[num_codebooks:]
    metrics = {}
    for k in range(num_codebooks):
        if total[k] > 0:
            metrics[f"acc_codebook_{k + 1}"] = float(correct[k] / total[k])
    if total.sum() > 0:
        metrics["acc"] = float(correct.sum() / total.sum())
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# One call: the Python API behind `valle train`


def build_training_arguments(output_dir: str, **overrides) -> TrainingArguments:
    """`TrainingArguments` with the paper's optimiser recipe as defaults; any argument can be overridden."""
    values = {"output_dir": output_dir, "remove_unused_columns": False, **paper_training_defaults()}
    values.update(overrides)
    return TrainingArguments(**values)


def train(
    model,
    args: TrainingArguments,
    train_dataset,
    eval_dataset=None,
    *,
    train_mode: str = "both",
    max_tokens: int = PAPER_MAX_TOKENS,
    max_batch_size: int | None = None,
    prompt_from_same_speaker: bool = False,
    speaker_column: str = "speaker",
    resume_from_checkpoint: str | bool | None = None,
    processor=None,
    card_datasets: list[str] | None = None,
    card_languages: list[str] | str | None = None,
    callbacks=None,
    alignment_examples: int = 16,
    join_same_speaker: float = 0.0,
    join_max_frames: int | None = None,
) -> VallETrainer:
    """
    Trains `model` on prepared data, saves it (and `processor`) in `args.output_dir` and writes its model card.

    `resume_from_checkpoint`: a checkpoint folder, or `True` for the latest in `args.output_dir`.
    `alignment_examples`: evaluation utterances on which each evaluation also checks that the AR reads its text
    (see `VallETrainer`; 0 = off).
    `join_same_speaker`: add this many joined rows per training utterance, two utterances of one speaker as one
    sequence (`valle.data.join_same_speaker`; needs `processor` for the word separator), so that the AR learns to go
    on from another utterance's prompt into a new sentence (VALL-E mode). 0 = off. `join_max_frames`: the longest
    joined row (default: the longest utterance of `train_dataset`).
    Returns the trainer (its `state.log_history` holds the losses).
    """
    set_train_mode(model, train_mode)
    joined_rows = 0
    if join_same_speaker:
        if processor is None:
            raise ValueError("join_same_speaker needs the processor (its tokenizer's word separator and special "
                             "tokens); pass processor=... (`valle train --processor DIR`).")
        from .data import join_same_speaker as join
        from .data import joining_ids

        before = len(train_dataset)
        # Every rank builds the same rows (same seed); the main process first, so the others read its cache.
        with args.main_process_first(desc="joining utterances of the same speaker"):
            train_dataset = join(train_dataset, join_same_speaker, seed=args.seed, speaker_column=speaker_column,
                                 max_frames=join_max_frames, **joining_ids(processor.tokenizer))
        joined_rows = len(train_dataset) - before
        logger.info("join_same_speaker: %d utterances + %d joined rows.", before, joined_rows)
    if args.gradient_checkpointing and not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError("This model does not support gradient checkpointing; drop --gradient_checkpointing.")
    def make_collator(prompt_source):
        return VallEDataCollator(
            pad_token_id=model.config.pad_token_id or 0,
            num_codebooks=model.config.num_codebooks,
            prompt_dataset=prompt_source if prompt_from_same_speaker else None,
            speaker_column=speaker_column,
            prompt_max_frames=model.config.nar_prompt_max_frames,
            seed=args.seed,
        )

    collator = make_collator(train_dataset)
    # Eval speakers are usually unseen in training: their prompts come from other eval utterances.
    eval_collator = make_collator(eval_dataset) if eval_dataset is not None else None
    trainer = VallETrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        eval_data_collator=eval_collator,
        processing_class=processor,
        max_tokens=max_tokens,
        max_batch_size=max_batch_size,
        callbacks=callbacks,
        alignment_examples=alignment_examples,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        _write_card(trainer, train_mode, max_tokens, card_datasets, card_languages,
                    _data_description(train_dataset, model.config.frame_rate, speaker_column, joined_rows))
    return trainer


def _data_description(dataset, frame_rate: int, speaker_column: str, joined_rows: int = 0) -> str | None:
    """One sentence on the training rows for the card: utterances, hours, speakers, joined rows (which come after
    the utterances in `dataset` and repeat their audio, so they are counted apart)."""
    try:
        utterances = dataset.select(range(len(dataset) - joined_rows)) if joined_rows else dataset
        columns = set(dataset.column_names)
        parts = [f"{len(utterances):,} utterances"]
        if "num_frames" in columns:
            parts[0] += f", {sum(utterances['num_frames']) / frame_rate / 3600:.1f} h of audio"
        if speaker_column in columns:
            parts.append(f"{len(set(utterances[speaker_column])):,} speakers")
        if joined_rows:
            plural = "s" if joined_rows != 1 else ""
            parts.append(f"plus {joined_rows:,} joined row{plural} (two utterances of one speaker each, "
                         "`--join-same-speaker`)")
    except (TypeError, AttributeError):  # not a sized table with columns: nothing to say
        return None
    return "Prepared data (`valle prepare`): " + "; ".join(parts) + "."


def end_distributed() -> None:
    """
    Ends this process's part in a distributed run (`torchrun` / `accelerate launch`): waits for the other ranks, then
    destroys the process group. Call it once at the end of a script that ran `train()` under a launcher: a process
    that exits with a live gloo group can abort at interpreter shutdown ("terminate called without an active
    exception", SIGABRT), and the launcher then reports the whole run as failed. `valle train` calls it. No-op
    outside a distributed run.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _write_card(trainer: VallETrainer, train_mode, max_tokens, datasets, languages, data_description=None) -> None:
    try:
        from hub_cards import write_model_card
    except ImportError:
        logger.info("hub_cards is not importable: no model card written.")
        return
    args = trainer.args
    world = max(1, args.world_size)
    info = {
        "steps": trainer.state.global_step,
        "epochs": round(float(trainer.state.epoch or 0), 2),
        "decoders trained": {"both": "AR and NAR", "ar": "AR only", "nar": "NAR only"}[train_mode],
        "optimizer": f"{args.optim} (weight decay {args.weight_decay})",
        "peak learning rate": args.learning_rate,
        "learning-rate schedule": f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)}, warm-up {args.warmup_steps}",
        "batch": f"{max_tokens} acoustic frames per device x {world} device(s) x {args.gradient_accumulation_steps} "
        "accumulation step(s)",
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }
    final_eval = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if final_eval:
        info["final eval loss"] = round(final_eval[-1]["eval_loss"], 4)
        for key, value in final_eval[-1].items():
            if key.startswith("eval_acc_codebook_"):
                info[f"final eval token accuracy, codebook {key.rsplit('_', 1)[1]}"] = round(value, 4)
    kwargs = {"config": trainer.model.config, "training_info": info, "data_description": data_description}
    if datasets:
        kwargs["datasets"] = datasets
    if languages:
        kwargs["languages"] = languages
    try:
        write_model_card(args.output_dir, **kwargs)
    except (TypeError, ValueError) as error:  # a card is a courtesy: never lose a finished run over it
        logger.warning("Could not write the model card: %s", error)


__all__ = [
    "PAPER_MAX_TOKENS",
    "PAPER_TRAINING_DEFAULTS",
    "TRAIN_MODES",
    "VallETrainer",
    "build_training_arguments",
    "paper_training_defaults",
    "set_train_mode",
    "train",
]
