"""How a model is trained; every field is a `train.<name>` key in the config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from lmforge.config.strict import STRICT


class TrainParams(BaseModel):
    model_config = STRICT

    output_dir: str | None = Field(None, description="Run directory; default runs/<task>-<date>-<time>. Never overwritten.")
    epochs: int = Field(3, gt=0, description="Passes over the training data; max_steps and patience end a run sooner.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps, even inside an epoch "
                                                          "(the schedule spans them): part of a very large file.")
    batch_size: int = Field(32, gt=0, description="Examples per forward pass (per process).")
    eval_batch_size: int = Field(64, gt=0, description="Examples per forward pass when evaluating.")
    lr: float = Field(5e-5, gt=0, description="Peak learning rate.")
    optimizer: Literal["adamw", "adafactor", "adamw_8bit", "sgd"] = Field(
        "adamw", description="adamw (torch's fused AdamW), adafactor (transformers; less optimizer memory), "
                             "adamw_8bit (bitsandbytes: CPU or CUDA, states in 8 bits), sgd (momentum 0.9).")
    scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                       "inverse_sqrt"] = Field("linear", description="Learning-rate schedule after warm-up "
                                                                     "(transformers.get_scheduler).")
    fsdp: bool = Field(False, description="Shard parameters, gradients and optimizer state over the processes of "
                                          "`accelerate launch` (torch FSDP2; GPUs and, over gloo, CPUs): each holds "
                                          "1/N. Checkpoints are sharded; model/ is one consolidated folder. Also on "
                                          "with `accelerate launch --use_fsdp`.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass instead of "
                                                            "storing them: less memory for large models, ~30% slower.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and norm weights).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of optimizer steps spent warming up linearly.")
    warmup_steps: int | None = Field(None, ge=0, description="Warm-up steps; overrides warmup_ratio when set.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this; null turns clipping off.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Batches whose gradients are summed per optimizer step.")
    dropout: float | None = Field(None, ge=0, lt=1, description="Override the model's dropout probabilities.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where the hardware runs bf16 natively (CUDA with bf16, CPUs with "
                            "AVX512-BF16/AMX), fp16 on older CUDA GPUs, else fp32. bf16/fp16: autocast (weights stay "
                            "fp32; fp16 trains with a gradient scaler). fp32: none.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding).")
    seed: int = Field(42, ge=0, lt=2**32, description="Seed for initialisation, data order and dropout (0 to 2^32 - 1).")
    metric: str | None = Field(None, description="Validation metric that picks the best epoch and drives early stopping; default the task's.")
    patience: int | None = Field(None, gt=0, description="Stop after this many evaluations without improvement of "
                                                         "`metric` (epochs, unless eval_every_steps); null = never.")
    eval_every_steps: int | None = Field(None, gt=0, description="Also score the validation split every N optimizer "
                                                                 "steps (best model kept, history.png per evaluation); "
                                                                 "null = at each epoch's end only.")
    save_every_steps: int | None = Field(None, gt=0, description="Also checkpoint every N optimizer steps (always at each epoch end).")
    save_every_minutes: float | None = Field(10.0, gt=0, description="Also checkpoint when this many minutes have passed "
                                                                    "since the last checkpoint, so a kill loses little; "
                                                                    "null = only by epoch and save_every_steps.")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    progress_every_seconds: float | None = Field(30.0, gt=0, description="Where stderr is not a terminal (CI, nohup, "
                                                                         "| tee): print a progress line this often; "
                                                                         "null = never.")
    log_every_steps: int = Field(20, gt=0, description="Write the training loss to metrics.jsonl every N optimizer steps.")
    tensorboard: bool | None = Field(None, description="Also write TensorBoard event files to <run>/tensorboard: "
                                                       "true, false, or null = when tensorboard is installed "
                                                       "(the tensorboard extra).")
    tracking: list[Literal["mlflow", "wandb"]] = Field(
        default_factory=list, description="Also log to these experiment trackers (accelerate's): mlflow (a local "
                                          "SQLite store beside the run directories unless tracking_uri is set), wandb.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (a server's http://… or sqlite:///…); "
                                                       "default sqlite:///<runs folder>/mlruns.db.")
    experiment: str = Field("lmforge", description="The tracker's experiment (MLflow) or project (W&B) name.")

    @field_validator("tracking", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value
