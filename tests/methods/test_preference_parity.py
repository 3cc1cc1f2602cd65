"""lmforge's preference losses equal TRL's (1.16) on a tiny random model and a fixed batch: DPO (sigmoid) and IPO
through TRL's DPOTrainer, KTO through its KTOTrainer, SimPO and ORPO through the loss functions of its CPO and
ORPO trainers; and three optimizer steps of lmforge's DPO loss leave the same weights as TRL's trainer."""

from __future__ import annotations

import copy
import types

import pytest
import torch

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from lmforge.methods.preference import losses as L  # noqa: E402

WORDS = "red blue dog cat big small a the is answer question yes no good bad".split()
PAIRS = [{"prompt": "a red dog is", "chosen": " good", "rejected": " bad bad"},
         {"prompt": "the cat", "chosen": " is small yes", "rejected": " no"},
         {"prompt": "question big", "chosen": " answer", "rejected": " blue cat"},
         {"prompt": "the blue", "chosen": " dog is good", "rejected": " cat"}]
UNPAIRED = [{"prompt": "a red dog is", "completion": " good", "label": True},
            {"prompt": "the cat", "completion": " no no", "label": False},
            {"prompt": "question big", "completion": " answer yes", "label": True},
            {"prompt": "the blue", "completion": " cat", "label": False}]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """TRL's trainers set accelerate's process-wide state their way; lmforge's runs in later tests set their own."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_model(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(WORDS) + 3, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, eos_token_id=1)
    return LlamaForCausalLM(config)


def ours_logps(model, input_ids, attention_mask, completion_mask):
    labels = input_ids.masked_fill(completion_mask == 0, L.IGNORE)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return L.sequence_logps(logits, labels)


def close(a, b) -> None:
    assert torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32),
                          atol=1e-5, rtol=1e-5), (a, b)


def dpo_trainer(tmp_path, loss_type: str, policy, reference, steps: int = 1):
    args = trl.DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], beta=0.1,
                         loss_type=[loss_type], use_cpu=True, max_steps=steps, learning_rate=0.05, optim="sgd",
                         lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1e9,
                         save_strategy="no", seed=0, logging_steps=1, disable_tqdm=True)
    return trl.DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(PAIRS),
                          processing_class=tokenizer())


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_and_ipo_losses_and_rewards_equal_trl(tmp_path, loss_type):
    policy, reference = tiny_model(0).eval(), tiny_model(1).eval()  # different weights: the rewards are not 0
    trainer = dpo_trainer(tmp_path, loss_type, policy, reference)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        theirs = trainer.compute_loss(policy, batch)
        logps, lengths = ours_logps(policy, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        ref, _ = ours_logps(reference, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    (chosen, rejected), (ref_chosen, ref_rejected) = logps.chunk(2), ref.chunk(2)
    if loss_type == "sigmoid":
        losses, chosen_r, rejected_r = L.dpo(chosen, rejected, ref_chosen, ref_rejected, 0.1)
    else:
        losses, chosen_r, rejected_r = L.ipo(chosen, rejected, ref_chosen, ref_rejected, *lengths.chunk(2), 0.1)
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    close(losses.mean(), theirs)
    close(chosen_r.mean(), metrics["rewards/chosen"])
    close(rejected_r.mean(), metrics["rewards/rejected"])
    close((chosen_r > rejected_r).float().mean(), metrics["rewards/accuracies"])
    close(chosen.mean(), metrics["logps/chosen"])
    assert abs(float(chosen_r.mean())) > 1e-3  # a real comparison, not zeros against zeros


def test_simpo_and_orpo_equal_trls_loss_functions():
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    torch.manual_seed(0)
    lengths_c, lengths_r = torch.tensor([2.0, 4.0, 1.0, 3.0]), torch.tensor([3.0, 1.0, 2.0, 2.0])
    chosen, rejected = -torch.rand(4) * 6 - 0.1, -torch.rand(4) * 6 - 0.1  # summed log-probs
    device = types.SimpleNamespace(device="cpu")
    cpo = types.SimpleNamespace(alpha=0.0, beta=2.0, loss_type="simpo", simpo_gamma=0.5, label_smoothing=0.1,
                                accelerator=device)
    theirs = CPOTrainer.cpo_loss(cpo, chosen / lengths_c, rejected / lengths_r)
    ours = L.simpo(chosen, rejected, lengths_c, lengths_r, 2.0, 0.5, 0.1)
    for a, b in zip(ours, theirs, strict=True):
        close(a, b)
    orpo = types.SimpleNamespace(beta=0.1, accelerator=device)
    losses, chosen_r, rejected_r, _, _ = ORPOTrainer.odds_ratio_loss(orpo, chosen / lengths_c, rejected / lengths_r)
    nll = torch.tensor(1.7)
    ours_losses, ours_c, ours_r = L.orpo(chosen, rejected, lengths_c, lengths_r, nll, 0.1)
    close(ours_losses.mean(), nll - losses.mean())  # TRL: loss = policy_nll_loss - losses.mean()
    close(ours_c, chosen_r)
    close(ours_r, rejected_r)


def test_kto_loss_and_rewards_equal_trl(tmp_path):
    policy, reference = tiny_model(0).eval(), tiny_model(1).eval()
    args = trl.KTOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], beta=0.1,
                         use_cpu=True, max_steps=1, save_strategy="no", disable_tqdm=True, desirable_weight=1.0,
                         undesirable_weight=1.0)
    trainer = trl.KTOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(UNPAIRED),
                             processing_class=tokenizer())
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(UNPAIRED))])
    with torch.no_grad():
        theirs = trainer.compute_loss(policy, batch)
        logps, _ = ours_logps(policy, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        ref, _ = ours_logps(reference, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        kl_logps, _ = ours_logps(policy, batch["KL_input_ids"], batch["KL_attention_mask"], batch["KL_completion_mask"])
        kl_ref, _ = ours_logps(reference, batch["KL_input_ids"], batch["KL_attention_mask"], batch["KL_completion_mask"])
    desirable = batch["label"].bool()
    losses, rewards = L.kto(logps, ref, desirable, L.kto_kl(kl_logps, kl_ref), 0.1)
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    close(losses.mean(), theirs)
    close(L.kto_kl(kl_logps, kl_ref), metrics["kl"])
    close(rewards[desirable].mean(), metrics["rewards/chosen"])
    close(rewards[~desirable].mean(), metrics["rewards/rejected"])


def test_three_optimizer_steps_of_dpo_leave_the_weights_trls_trainer_leaves(tmp_path):
    """SGD: Adam divides each update by √v, so float rounding in a near-zero gradient decides its sign (an
    update of ±lr either way) — SGD compares the gradients themselves. TRL takes log-probs through its fused
    LM-head path: the first step's gradients agree to ~2e-5 (relative), the weights after three steps to
    ~1e-3 of the distance they moved."""
    policy, reference = tiny_model(0), tiny_model(1).eval()
    ours, policy_before = copy.deepcopy(policy), copy.deepcopy(policy)
    trainer = dpo_trainer(tmp_path, "sigmoid", policy, copy.deepcopy(reference), steps=3)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    trainer.train()  # three steps over the same four pairs (one batch)

    optimizer = torch.optim.SGD(ours.parameters(), lr=0.05)
    ours.train()
    with torch.no_grad():
        ref, _ = ours_logps(reference, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    for _ in range(3):
        logps, _ = ours_logps(ours, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        losses, _, _ = L.dpo(*logps.chunk(2), *ref.chunk(2), 0.1)
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()
    trained = dict(trainer.model.named_parameters())
    moved = max(float((p - q).abs().max()) for p, q in zip(ours.parameters(), policy_before.parameters(), strict=True))
    gap = max(float((parameter - trained[name]).abs().max()) for name, parameter in ours.named_parameters())
    print(f"3 SGD steps: weights moved up to {moved:.2e}; lmforge vs TRL differ by at most {gap:.2e}")
    assert moved > 1e-3 and gap < 2e-3 * moved


def test_the_first_step_gradients_equal_trls(tmp_path):
    policy, reference = tiny_model(0).train(), tiny_model(1).eval()
    ours = copy.deepcopy(policy)
    trainer = dpo_trainer(tmp_path, "sigmoid", policy, copy.deepcopy(reference))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    trainer.compute_loss(policy, batch).backward()
    with torch.no_grad():
        ref, _ = ours_logps(reference, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    logps, _ = ours_logps(ours, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    L.dpo(*logps.chunk(2), *ref.chunk(2), 0.1)[0].mean().backward()
    gap = max(float((a.grad - b.grad).abs().max() / b.grad.abs().max().clamp(min=1e-12))
              for a, b in zip(ours.parameters(), policy.parameters(), strict=True))
    assert gap < 1e-4, gap
