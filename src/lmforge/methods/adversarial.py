"""Adversarial training on the input embeddings: FGM (one step) and PGD (k projected steps).

After the ordinary backward pass, the embedding matrix is pushed along its gradient (by `epsilon` in
L2 norm for FGM; by `alpha` per step inside an `epsilon` ball for PGD), the loss on the perturbed
embeddings is backpropagated as well, and the embeddings are restored — so the optimizer step sees the
gradients of the clean and the adversarial loss together (Miyato et al. 2017; Madry et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, Field

from lmforge.config.strict import STRICT
from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession, TuningMethod


class AdversarialParams(BaseModel):
    model_config = STRICT

    method: Literal["fgm", "pgd"] = Field(..., description="fgm: one step of size epsilon; pgd: `steps` steps of alpha.")
    epsilon: float = Field(1.0, gt=0, description="L2 size of the perturbation (FGM) or radius of the ball (PGD).")
    alpha: float = Field(0.3, gt=0, description="PGD step size.")
    steps: int = Field(3, gt=0, description="PGD steps.")


def embedding_weight(model: torch.nn.Module) -> torch.nn.Parameter:
    """The word-embedding matrix of a (possibly PEFT- or DDP-wrapped) HF model."""
    inner = getattr(model, "module", model)
    return inner.get_input_embeddings().weight


def _along_gradient(grad: torch.Tensor, size: float) -> torch.Tensor:
    norm = torch.linalg.vector_norm(grad)
    return torch.zeros_like(grad) if norm == 0 or not torch.isfinite(norm) else size * grad / norm


def adversarial_backward(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], params: AdversarialParams) -> None:
    """Add the gradients of the loss under an embedding perturbation; call right after the clean backward."""
    weight = embedding_weight(model)
    if weight.grad is None:  # frozen embeddings (or no gradient reached them): nothing to perturb along
        return
    original = weight.data.clone()
    if params.method == "fgm":
        weight.data.add_(_along_gradient(weight.grad, params.epsilon))
        loss_fn().backward()
    else:
        clean_grads = {p: p.grad.clone() for p in model.parameters() if p.grad is not None}
        for step in range(params.steps):
            weight.data.add_(_along_gradient(weight.grad, params.alpha))
            delta = weight.data - original
            norm = torch.linalg.vector_norm(delta)
            if norm > params.epsilon:  # project back onto the epsilon ball
                weight.data.copy_(original + delta * (params.epsilon / norm))
            if step < params.steps - 1:
                model.zero_grad(set_to_none=False)
                loss_fn().backward()  # only to find the next direction
        for p in model.parameters():  # the update uses clean + final adversarial gradients
            if p in clean_grads:
                p.grad.copy_(clean_grads[p])
            elif p.grad is not None:
                p.grad.zero_()
        loss_fn().backward()
    weight.data.copy_(original)


class Adversarial(TuningMethod):
    fields = {"adversarial": (AdversarialParams | None, Field(None, description="Adversarial training on the "
                                                                                "embeddings, e.g. {method: fgm, "
                                                                                "epsilon: 1.0}; null = off."))}
    example = {"adversarial": {"method": "fgm"}}

    def check(self, session: TrainingSession) -> None:
        if session.precision == "fp16":
            raise ConfigError("tuning.adversarial does not work with fp16 training yet (its extra backward pass is "
                              "not loss-scaled); use train.precision auto, bf16 or fp32")

    def after_backward(self, model: torch.nn.Module, clean_loss: Callable[[], torch.Tensor]) -> None:
        adversarial_backward(model, clean_loss, self.tuning.adversarial)
