"""The training loop: contrastive training on catalog (image, caption) pairs, resumable.

Everything random is a function of (seed, epoch, step): the epoch's order, the image
augmentation and the caption drawn for each item. So a run resumed from a saved step
replays exactly the steps an uninterrupted run would have taken, and two runs with the
same seed on the same CPU give the same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from lookalike.config import Settings
from lookalike.encode.images import ImageLimits
from lookalike.encode.torch_runtime import resolve_device
from lookalike.errors import CheckpointError, ConfigError, InvalidInput
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.ingest.sources import ItemSpec
from lookalike.train.captions import caption_variants, category_prompt
from lookalike.train.checkpoint import TrainState, load_state, save_state
from lookalike.train.data import (
    CaptionTable,
    GiB,
    ImageStore,
    Splits,
    augment,
    batches,
    epoch_order,
    read_items,
    sample_captions,
    split_items,
    step_generator,
    steps_per_epoch,
)
from lookalike.train.loss import (
    category_contrast_loss,
    category_loss,
    contrastive_loss,
    positives_matrix,
    same_category_pairs,
)
from lookalike.train.metrics import hit_at_k, knn, precision_at_k, retrieved_labels
from lookalike.train.models import LitTrainable, OpenClipTrainable, Trainable

MAX_LOGIT_SCALE = math.log(100.0)
DEFAULT_LR = {"lit": 2e-3, "finetune": 1e-5}


@dataclass
class TrainConfig:
    """One run's knobs; the CLI's `lookalike train` options map onto these."""

    mode: Literal["lit", "finetune"] = "lit"
    epochs: int = 3
    batch_size: int = 256
    lr: float | None = None  # default by mode: DEFAULT_LR
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    tower: str = "rn-tiny"
    image_size: int = 32
    embed_dim: int | None = None  # default: the text tower's dimension
    text_projection: Literal["linear", "identity"] = "linear"
    temperature: float = 0.07  # lit: initial softmax temperature (then learned)
    # Image augmentation (flip + shift). Off by default: in runs of a few epochs it slowed
    # learning more than it helped (README "Demo model"); captions are always varied.
    augment: bool = False
    # False: another item's caption is no negative when both items share a category (a
    # brand or title the pictures cannot show does not push same-category images apart).
    same_category_negatives: bool = True
    # Weights of the category terms beside the caption contrast (train/loss.py), used when
    # items have categories: each image classified against the class prompts' projected
    # text embeddings, and same-category images as positives among the batch's images.
    category_loss: float = 0.0
    category_contrast: float = 0.0
    val_fraction: float = 0.02
    val_max: int = 2000
    checkpoint_every: int = 200  # steps between training-state saves (and every epoch end)
    max_steps: int | None = None  # stop (resumably) after this many steps in total
    limit: int | None = None  # use only the first N items of the source
    cache_bytes: int = 2 * GiB

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]

    def resume_key(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        return {
            "mode": self.mode,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "augment": self.augment,
            **({} if self.same_category_negatives else {"same_category_negatives": False}),
            # Named only when on: runs saved before these terms existed still resume.
            **({"category_loss": self.category_loss} if self.category_loss else {}),
            **({"category_contrast": self.category_contrast} if self.category_contrast else {}),
            "lr": self.learning_rate,
            "weight_decay": self.weight_decay,
            "warmup_steps": self.warmup_steps,
            **(
                {
                    "tower": self.tower,
                    "image_size": self.image_size,
                    "embed_dim": self.embed_dim,
                    "text_projection": self.text_projection,
                    "temperature": self.temperature,
                }
                if self.mode == "lit"
                else {}
            ),
        }


@dataclass
class TrainResult:
    output: Path
    step: int
    total_steps: int
    finished: bool
    resumed_from: int | None
    model: str
    train_items: int
    val_items: int
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # each step of this run, in order
    skipped: int = 0
    seconds: float = 0.0


def train(
    source: str | Path,
    output: Path,
    settings: Settings,
    config: TrainConfig,
    *,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train on the items of `source` and write a loadable model directory to `output`."""
    started = time.monotonic()
    _check_config(config)
    device = resolve_device(settings.device)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    items, bad_rows = read_items(source, config.limit)
    splits = split_items(
        items, val_fraction=config.val_fraction, val_max=config.val_max, seed=config.seed
    )
    if not splits.train:
        raise InvalidInput(f"{source}: no training items (items marked split=test are held out)")
    state = load_state(output) if resume else None
    if state is not None and state.info.get("run") != config.resume_key():
        raise CheckpointError(
            f"{output} holds a run with other settings ({state.info.get('run')}); "
            "use --no-resume to start over, or another --output"
        )
    trainable = _trainable(settings, config, device, output)
    if state is not None and state.info.get("architecture") != _architecture(trainable):
        raise CheckpointError(
            f"{output} holds a run of another model ({state.info.get('architecture')}); "
            "use --no-resume to start over, or another --output"
        )
    say(trainable.describe())
    fetcher = Fetcher.from_settings(settings, local_roots=ingest_roots(source, settings))
    data = _TrainingData.load(splits, trainable, settings, config, progress, fetcher)
    data.skipped += len(bad_rows)
    say(
        f"data: {len(data.train)} train, {len(data.val)} validation, "
        f"{splits.held_out} held out (split=test), {data.skipped} skipped"
    )
    if state is not None and state.info.get("data") != data.signature:
        raise CheckpointError(
            f"{output} was trained on other items than {source} gives now; "
            "use --no-resume to start over, or another --output"
        )
    run = _Run(trainable, data, config, output, device, str(source))
    if state is not None:
        run.restore(state)
        say(f"resuming at step {run.step} of {run.total_steps}")
    run.run(progress)
    return TrainResult(
        output=output,
        step=run.step,
        total_steps=run.total_steps,
        finished=run.step >= run.total_steps,
        resumed_from=state.step if state is not None else None,
        model=trainable.describe(),
        train_items=len(data.train),
        val_items=len(data.val),
        history=run.history,
        losses=run.losses,
        skipped=data.skipped,
        seconds=time.monotonic() - started,
    )


@dataclass
class _TrainingData:
    train: ImageStore
    val: ImageStore
    variants: torch.Tensor  # (N, V) caption ids of each training item
    counts: torch.Tensor  # (N,) variants per item
    categories: torch.Tensor | None  # (N,) category code of each item, -1 for none
    category_prompts: torch.Tensor | None  # (C,) caption id of each code's class prompt
    val_plan: _ValidationPlan
    signature: str  # the training items' ids, hashed: a resume must see the same items
    skipped: int

    @classmethod
    def load(
        cls,
        splits: Splits,
        trainable: Trainable,
        settings: Settings,
        config: TrainConfig,
        progress: bool,
        fetcher: Fetcher,
    ) -> _TrainingData:
        limits = ImageLimits.from_settings(settings)
        options = {
            "workers": settings.ingest_workers,
            "cache_bytes": config.cache_bytes,
            "progress": progress,
            "fetcher": fetcher,
        }
        preprocess = trainable.preprocess
        train = ImageStore(splits.train, preprocess, limits, desc="load train images", **options)
        val = ImageStore(splits.val, preprocess, limits, desc="load val images", **options)
        if not len(train):
            raise InvalidInput("none of the training images could be read")
        captions = CaptionTable()
        variants, counts = captions.variants(train.items)
        val_plan = _validation_plan(val.items, captions)
        codes, names = _category_codes(train.items)
        # Each item's variants hold its class prompt already: no new text to embed.
        prompts = torch.tensor([captions.add(category_prompt(n)) for n in names], dtype=torch.long)
        trainable.prepare_captions(captions.texts)
        return cls(
            train,
            val,
            variants,
            counts,
            codes,
            prompts if names else None,
            val_plan,
            _signature(train.items),
            len(train.failed) + len(val.failed),
        )


class _Run:
    """The loop's state: step, per-epoch loss, history; checkpoints and validation."""

    def __init__(
        self,
        trainable: Trainable,
        data: _TrainingData,
        config: TrainConfig,
        output: Path,
        device: str,
        source: str,
    ) -> None:
        self.trainable = trainable
        self.data = data
        self.config = config
        self.output = output
        self.device = device
        self.source = source
        self.optimizer = torch.optim.AdamW(
            _parameter_groups(trainable.module, config.weight_decay),
            lr=config.learning_rate,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        self.per_epoch = steps_per_epoch(len(data.train), config.batch_size)
        self.total_steps = config.epochs * self.per_epoch
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []  # this process's steps
        self.epoch_loss = [0.0, 0]  # sum, count over the current epoch

    def restore(self, state: TrainState) -> None:
        self.trainable.module.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.rng)
        self.step = state.step
        self.history = list(state.info.get("history", []))
        self.epoch_loss = list(state.info.get("epoch_loss", [0.0, 0]))

    def run(self, progress: bool) -> None:
        config = self.config
        stop_at = min(self.total_steps, config.max_steps or self.total_steps)
        bar = tqdm(
            total=stop_at * config.batch_size,
            initial=min(self.step, stop_at) * config.batch_size,
            desc="train",
            unit="img",
            disable=not progress,
            smoothing=0.1,
        )
        try:
            while self.step < stop_at:
                self._epoch(stop_at, bar)
                finished = self.step >= self.total_steps
                self.checkpoint(finished)
                self.trainable.save(self.output, self.info(finished))
        finally:
            bar.close()

    def _epoch(self, stop_at: int, bar: tqdm) -> None:
        """Steps from the current one to the end of its epoch (or `stop_at`)."""
        epoch = self.step // self.per_epoch
        self.trainable.module.train()
        order = epoch_order(len(self.data.train), self.config.seed, epoch)
        for index_in_epoch, indices in enumerate(batches(order, self.config.batch_size)):
            if epoch * self.per_epoch + index_in_epoch < self.step:
                continue  # done before the run was resumed
            loss = _train_step(self, indices)
            self.step += 1
            self.losses.append(loss)
            self.epoch_loss = [self.epoch_loss[0] + loss, self.epoch_loss[1] + 1]
            bar.update(len(indices))
            bar.set_postfix(epoch=epoch + 1, loss=f"{self.epoch_loss[0] / self.epoch_loss[1]:.3f}")
            if self.step >= stop_at:
                break
            if self.step % self.config.checkpoint_every == 0 and self.step % self.per_epoch:
                self.checkpoint(finished=False)
        if self.step % self.per_epoch == 0:
            self._end_epoch()

    def _end_epoch(self) -> None:
        metrics = _validate(self.trainable, self.data.val, self.data.val_plan, self.device)
        total, count = self.epoch_loss
        self.history.append(
            {
                "epoch": self.step // self.per_epoch,
                "step": self.step,
                "loss": round(total / max(count, 1), 4),
                "temperature": round(1 / self.trainable.logit_scale.exp().item(), 4),
                **metrics,
            }
        )
        self.epoch_loss = [0.0, 0]
        say(_epoch_line(self.history[-1], self.config.epochs))

    def info(self, finished: bool) -> dict[str, Any]:
        return {
            "run": self.config.resume_key(),
            "architecture": _architecture(self.trainable),
            "data": self.data.signature,
            "config": asdict(self.config),
            "source": self.source,
            "train_items": len(self.data.train),
            "val_items": len(self.data.val),
            "steps": self.step,
            "total_steps": self.total_steps,
            "finished": finished,
            "history": self.history,
            "epoch_loss": self.epoch_loss,
        }

    def checkpoint(self, finished: bool) -> None:
        save_state(
            self.output,
            step=self.step,
            info=self.info(finished),
            model=self.trainable.module,
            optimizer=self.optimizer,
        )


def say(message: str) -> None:
    """A line of output that does not break a running progress bar."""
    tqdm.write(message)


def _train_step(run: _Run, indices: torch.Tensor) -> float:
    config, data, trainable = run.config, run.data, run.trainable
    generator = step_generator(config.seed, 2, run.step)
    pixels = data.train.get(indices)
    if config.augment:
        pixels = augment(pixels, generator)
    caption_ids = sample_captions(data.variants[indices], data.counts[indices], generator)
    positives = positives_matrix(data.variants[indices], caption_ids).to(run.device)
    ignored = None
    if not config.same_category_negatives and data.categories is not None:
        ignored = same_category_pairs(data.categories[indices].to(run.device), positives)
    scale = _lr_factor(run.step, run.total_steps, config.warmup_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = config.learning_rate * scale
    images = trainable.image_features(pixels.to(run.device))
    loss = contrastive_loss(
        images,
        trainable.text_features(caption_ids.to(run.device)),
        positives,
        trainable.logit_scale,
        ignored,
    )
    if data.categories is not None and data.category_prompts is not None:
        categories = data.categories[indices].to(run.device)
        if config.category_loss:
            # The prototypes go through the projection every step: it is trained too.
            prototypes = trainable.text_features(data.category_prompts.to(run.device))
            loss = loss + config.category_loss * category_loss(
                images, prototypes, categories, trainable.logit_scale
            )
        if config.category_contrast:
            loss = loss + config.category_contrast * category_contrast_loss(
                images, categories, trainable.logit_scale
            )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    with torch.no_grad():
        trainable.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.item())


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    warmup = min(warmup, max(total // 10, 1))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No decay on gains, biases and the temperature (the usual CLIP recipe).
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        target = no_decay if parameter.ndim < 2 or "logit_scale" in name else decay
        target.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _architecture(trainable: Trainable) -> dict[str, Any]:
    return json.loads(json.dumps(trainable.architecture()))  # as saved: lists, not tuples


def _trainable(settings: Settings, config: TrainConfig, device: str, output: Path) -> Trainable:
    if config.mode == "lit":
        trainable = LitTrainable.create(
            settings.text_model,
            device,
            config.seed,
            tower=config.tower,
            image_size=config.image_size,
            embed_dim=config.embed_dim,
            text_projection=config.text_projection,
            # Captions are embedded once, before the first step, with nothing else running:
            # the text tower may use every core torch uses.
            threads=settings.torch_threads or torch.get_num_threads(),
        )
        with torch.no_grad():
            trainable.logit_scale.fill_(math.log(1 / config.temperature))
        return trainable
    from lookalike.encode.factory import model_source

    source = model_source(settings)
    if source.is_local and Path(source.location).resolve() == output.resolve():
        raise ConfigError(f"fine-tuning writes to {output}: choose an output other than the base")
    cache_dir = str(settings.model_cache_dir) if settings.model_cache_dir else None
    torch.manual_seed(config.seed)
    return OpenClipTrainable(source, device, cache_dir)


@dataclass
class _ValidationPlan:
    caption_ids: np.ndarray  # each validation item's canonical caption id
    caption_texts: list[str]  # distinct canonical captions (queries)
    caption_query_ids: np.ndarray
    categories: np.ndarray | None  # each item's category code, when all items have one
    category_names: list[str]  # code -> category


def _validation_plan(items: list[ItemSpec], captions: CaptionTable) -> _ValidationPlan:
    canonical = [caption_variants(item)[0] for item in items]
    ids = np.asarray([captions.add(text) for text in canonical], dtype=np.int64)
    distinct = sorted(set(canonical))
    categories = None
    names: list[str] = []
    if items and all(item.category for item in items):
        unique, categories = np.unique([str(item.category) for item in items], return_inverse=True)
        names = unique.tolist()
    return _ValidationPlan(
        ids, distinct, np.asarray([captions.add(t) for t in distinct]), categories, names
    )


def _validate(
    trainable: Trainable, store: ImageStore, plan: _ValidationPlan, device: str
) -> dict[str, float]:
    """Recall@K of each distinct caption finding its images; with categories, class-prompt
    precision@10 (text -> image) and image -> image precision@10."""
    if not len(store):
        return {}
    module = trainable.module
    module.eval()
    try:
        with torch.no_grad():
            images = torch.cat(
                [
                    trainable.image_features(store.get(chunk).to(device)).cpu()
                    for chunk in torch.arange(len(store)).split(512)
                ]
            ).numpy()
            queries = trainable.texts_features(plan.caption_texts).cpu().numpy()
            found = retrieved_labels(knn(queries, images, 10), plan.caption_ids)
            metrics = {
                f"caption_R@{k}": float(hit_at_k(found, plan.caption_query_ids, k).mean())
                for k in (1, 5, 10)
            }
            if plan.categories is not None and len(plan.category_names) > 1:
                prompts = [category_prompt(c) for c in plan.category_names]
                texts = trainable.texts_features(prompts).cpu().numpy()
                by_text = retrieved_labels(knn(texts, images, 10), plan.categories)
                metrics["class_prompt_P@10"] = float(
                    precision_at_k(by_text, np.arange(len(prompts))).mean()
                )
                by_image = retrieved_labels(
                    knn(images, images, 10, exclude_self=True), plan.categories
                )
                metrics["image_P@10"] = float(precision_at_k(by_image, plan.categories).mean())
    finally:
        module.train()
    return {k: round(v, 4) for k, v in metrics.items()}


def _epoch_line(entry: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {entry['epoch']}/{epochs}", f"loss {entry['loss']:.3f}"]
    parts += [f"{k} {v:.3f}" for k, v in entry.items() if "@" in k]
    return " | ".join(parts)


def _category_codes(items: list[ItemSpec]) -> tuple[torch.Tensor | None, list[str]]:
    """Each item's category code (-1 for none) and the categories by code."""
    names = sorted({str(item.category) for item in items if item.category})
    if not names:
        return None, []
    code = {name: i for i, name in enumerate(names)}
    codes = torch.tensor([code.get(str(item.category), -1) for item in items], dtype=torch.long)
    return codes, names


def _signature(items: list[ItemSpec]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.id.encode() + b"\0")
    return digest.hexdigest()[:16]


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1 or config.batch_size < 2:
        raise ConfigError("training needs epochs >= 1 and a batch size >= 2")
    if config.max_steps is not None and config.max_steps < 1:
        raise ConfigError("max_steps must be >= 1")
    if config.category_loss < 0 or config.category_contrast < 0:
        raise ConfigError("category_loss and category_contrast must be >= 0")
    if not 0 < config.temperature <= 1:
        raise ConfigError("temperature must be in (0, 1]")
    if config.checkpoint_every < 1:
        raise ConfigError("checkpoint_every must be >= 1")
