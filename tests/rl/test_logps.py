"""GRPO's chunked head gives the plain path's numbers: per-token log-probs of the completion
tokens, the entropy there, the loss and its gradients, from the model's full logits."""

import pytest
import torch

from preftune.models.load import add_lora, load_model
from preftune.rl.grpo import grpo_loss
from preftune.rl.logps import PROMPT, CompletionLogps, reference_logps


def batch():
    """Three sequences of the tiny model's tokens: prompts of 3-5 tokens, completions of 2-6,
    right-padded; labels are the next tokens, PROMPT off the completions."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 200, (3, 11), generator=g)
    labels = torch.full_like(ids, PROMPT)
    for row, (prompt, completion) in enumerate([(3, 6), (5, 2), (4, 5)]):
        labels[row, prompt - 1:prompt - 1 + completion] = ids[row, prompt:prompt + completion]
    return ids[:, :-1], labels[:, :-1]


def plain_reference(model, ids, labels):
    """Per-token log-probs and entropies straight from the model's (B, T, V) logits."""
    logits = model(input_ids=ids).logits.float()
    logp = logits.log_softmax(-1)
    mask = labels != PROMPT
    picked = logp.gather(-1, torch.where(mask, labels, 0)[..., None]).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return torch.where(mask, picked, 0.0), torch.where(mask, entropy, 0.0).detach()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("chunk", [3, None], ids=["chunks-of-3", "default-chunk"])
def test_chunked_head_matches_full_logits(lora, chunk):
    torch.manual_seed(0)
    model = load_model("tiny", "fp32")
    if lora:
        model = add_lora(model, 8, 16, 0.0, "all-linear")
        for name, p in model.named_parameters():  # LoRA's B starts at 0: move it
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.05)
    ids, labels = batch()
    mask = labels != PROMPT
    advantages = torch.tensor([1.0, -0.5, 0.25])
    old = torch.where(mask, -5.0 + 0.1 * torch.randn(labels.shape), 0.0)

    def loss_and_grads(logps):
        out = grpo_loss(logps, old, advantages, mask, clip_eps=0.2)
        params = [p for p in model.parameters() if p.requires_grad]
        return out.loss, torch.autograd.grad(out.loss, params)

    want_logps, want_entropy = plain_reference(model, ids, labels)
    want_loss, want_grads = loss_and_grads(want_logps)
    for chunked in (True, False):  # the chunked head, and the plain path it falls back to
        scorer = CompletionLogps(model, chunked=chunked, chunk_tokens=chunk)
        logps, entropy = scorer(ids, labels)
        torch.testing.assert_close(logps, want_logps, rtol=0, atol=1e-5)
        torch.testing.assert_close(entropy, want_entropy, rtol=0, atol=1e-5)
        loss, grads = loss_and_grads(logps)
        torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-5)
        for got, want in zip(grads, want_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert bool((logps[~mask] == 0).all()) and bool((entropy[~mask] == 0).all())


def test_reference_is_the_policy_without_its_adapters():
    torch.manual_seed(0)
    base = load_model("tiny", "fp32")
    ids, labels = batch()
    want = CompletionLogps(base)(ids, labels)[0]
    policy = add_lora(load_model("tiny", "fp32"), 8, 16, 0.0, "all-linear")
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    scorer = CompletionLogps(policy)
    assert not torch.allclose(scorer(ids, labels)[0], want, atol=1e-3)  # adapters change it
    got = reference_logps(scorer, None, ids, labels)
    torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-5)
    assert not got.requires_grad
    frozen = reference_logps(scorer, base, ids, labels)  # full fine-tuning's frozen copy
    torch.testing.assert_close(frozen, want.detach(), rtol=0, atol=1e-5)
