"""The family matrix: every model family users train, built small from its own transformers
config, trains step for step like the plain path.

For each family, with LoRA and with full fine-tuning: five DPO steps through the fast paths
(shared prompt, packed rows, chunked log-probs) give the per-step losses of the plain path
(``shared_prompt=false pack_pairs=false chunked_logps=false``) within 1e-5 in fp32; the first
step's loss is log 2; and the packed reference pass equals a separate forward of each sequence.
Mistral and Gemma 3 get a sliding window far shorter than the data, Gemma 2 its soft-capping,
GPT-2 its dropout of 0.1, Qwen3-MoE a router whose balancing loss joins the loss.
"""

import json
import math

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

from preftune.config import TrainConfig
from preftune.engine import forward
from preftune.engine.forward import FastPaths, ResponseLogps, layout, score_batch
from preftune.engine.logprobs import TokenRows, collate_pairs, sequence_logps
from preftune.engine.loop import train
from preftune.engine.reference import reference_pass
from preftune.models.load import add_lora, load_model, load_tokenizer

WINDOW = 8  # tokens: the sample prompts alone are 20 to 60
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2048}
FAMILIES = {
    "llama": ("LlamaConfig", SMALL),
    "mistral": ("MistralConfig", {**SMALL, "sliding_window": WINDOW}),
    "qwen2": ("Qwen2Config", SMALL),
    "qwen3": ("Qwen3Config", {**SMALL, "head_dim": 16}),
    "qwen3_moe": ("Qwen3MoeConfig", {
        **SMALL, "head_dim": 16, "moe_intermediate_size": 32, "num_experts": 4,
        "num_experts_per_tok": 2, "output_router_logits": True, "router_aux_loss_coef": 0.01}),
    "gemma2": ("Gemma2Config", {**SMALL, "head_dim": 16, "sliding_window": WINDOW,
                                "layer_types": ["sliding_attention", "full_attention"]}),
    "gemma3": ("Gemma3TextConfig", {**SMALL, "head_dim": 16, "sliding_window": WINDOW,
                                    "layer_types": ["sliding_attention", "full_attention"]}),
    "phi3": ("Phi3Config", {**SMALL, "pad_token_id": 0}),
    "gpt2": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 2048,
                            "n_positions": 512}),  # dropout 0.1 everywhere, as GPT-2 ships
    "gpt_neox": ("GPTNeoXConfig", {**SMALL, "num_key_value_heads": 4}),
}
PLAIN = {"shared_prompt": False, "pack_pairs": False, "chunked_logps": False}
# Short sequences and a moderate learning rate keep fp32 rounding (log-prob sums of a random
# model run to hundreds) well under the 1e-5 bound; a window left out of the mask moves the
# loss by 1e-3 and more.
STEPS = {"max_steps": 5, "logging_steps": 1, "batch_size": 2, "grad_accum": 1,
         "learning_rate": 1e-3, "warmup_steps": 1, "max_length": 64,
         "max_prompt_length": 40, "lora_rank": 8}


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    """The directory of a small random model of each family, with the tiny tokenizer."""
    made = {}

    def make(family):
        if family not in made:
            name, kwargs = FAMILIES[family]
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(getattr(transformers, name)(**kwargs))
            path = tmp_path_factory.mktemp(family)
            model.save_pretrained(path)
            load_tokenizer("tiny").save_pretrained(path)
            made[family] = path
        return made[family]

    return make


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


def _train(model_dir, data, out, lora, **extra):
    options = {**STEPS, **extra}
    return _metrics(train(TrainConfig(dataset=str(data), model=str(model_dir), output_dir=str(out),
                                      lora=lora, dtype="fp32", **options)).run_dir)


def _largest_difference(got, want, key="loss"):
    return max(abs(a[key] - b[key]) / abs(b[key]) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fast_paths_train_like_the_plain_path(family, lora, family_dir, sample_pairs, tmp_path):
    model_dir = family_dir(family)
    plain = _train(model_dir, sample_pairs, tmp_path / "plain", lora, **PLAIN)
    fast = _train(model_dir, sample_pairs, tmp_path / "fast", lora)
    assert len(fast) == len(plain) == 5
    difference = _largest_difference(fast, plain)
    print(f"MATRIX {family} {'lora' if lora else 'full'} {difference:.2e}",
          [r["loss"] for r in fast], [r["loss"] for r in plain])
    assert difference < 1e-5
    assert fast[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert plain[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    if family == "qwen3_moe":  # the router's balancing loss is logged and trained on
        assert _largest_difference(fast, plain, "router_aux_loss") < 1e-5
        assert all(r["router_aux_loss"] > 0 for r in fast)
    else:
        assert "router_aux_loss" not in fast[0]


@pytest.mark.parametrize("family", ["mistral", "gemma3"])
def test_the_matrix_fails_when_the_window_is_ignored(family, family_dir, sample_pairs, tmp_path,
                                                     monkeypatch):
    """The parity above is a real check: a packed mask without the window is caught."""
    model_dir = family_dir(family)
    plain = _train(model_dir, sample_pairs, tmp_path / "plain", False, **PLAIN)
    monkeypatch.setattr(forward, "layer_windows", lambda config: {"full_attention": None})
    fast = _train(model_dir, sample_pairs, tmp_path / "fast", False)
    difference = _largest_difference(fast, plain)
    print(f"WINDOW IGNORED {family} {difference:.2e}")
    assert difference > 1e-4


def _rows():
    g = torch.Generator().manual_seed(3)

    def ids(low, high):
        n = int(torch.randint(low, high, (1,), generator=g))
        return torch.randint(10, 2000, (n,), generator=g).tolist()

    return TokenRows([ids(10, 30) for _ in range(5)], [ids(5, 20) for _ in range(5)],
                     [ids(5, 20) for _ in range(5)])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_packed_reference_pass_equals_separate_forwards(family, family_dir):
    rows = _rows()
    base = load_model(str(family_dir(family)), "fp32", attention_fallback=True,
                      attn_implementation="sdpa").eval()
    policy = add_lora(load_model(str(family_dir(family)), "fp32", attention_fallback=True,
                                 attn_implementation="sdpa"), 4, 8, 0.0, "all-linear")
    with torch.no_grad():  # adapters off zero, so that only disabling them gives the base
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    fast = FastPaths(chunk_tokens=16)
    batches = [layout(rows, [i, i + 1], 0, fast) for i in range(0, 4, 2)] + [
        layout(rows, [4], 0, fast)]
    chosen, rejected = reference_pass(policy, None, batches, fast)
    with torch.no_grad():
        for i in range(5):  # each sequence on its own: no padding, no packing, full logits
            one = collate_pairs([rows.prompt_ids[i]], [rows.chosen_ids[i]],
                                [rows.rejected_ids[i]], 0)
            alone = sequence_logps(base, one)
            assert chosen[i] == pytest.approx(float(alone.chosen[0]), rel=1e-5)
            assert rejected[i] == pytest.approx(float(alone.rejected[0]), rel=1e-5)


def test_gemma2_loads_with_an_attention_kernel_it_has(family_dir):
    with pytest.warns(UserWarning, match="no sdpa attention; loading it with eager"):
        model = load_model(str(family_dir("gemma2")), "fp32", attn_implementation="sdpa",
                           attention_fallback=True)
    assert model.config._attn_implementation == "eager"
    assert forward.unsupported_reason(model) is None  # soft-capping runs in the chunked head


def test_soft_capped_logits_and_their_gradients_match_the_model(family_dir):
    model = load_model(str(family_dir("gemma2")), "fp32", attn_implementation="eager")
    assert model.config.final_logit_softcapping == 30.0
    rows = _rows()
    grads = []
    for paths in (FastPaths(False, False, False), FastPaths(chunk_tokens=16)):
        model.zero_grad()
        logps = score_batch(ResponseLogps(model, paths), layout(rows, list(range(5)), 0, paths))
        (0.7 * logps.chosen.sum() - logps.rejected.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                if p.grad is not None]))
    assert (grads[1] - grads[0]).abs().max() <= 1e-5 * grads[0].abs().max()


def test_mixed_windows_without_a_mask_per_layer_kind_fall_back(family_dir, monkeypatch):
    model = load_model(str(family_dir("gemma3")), "fp32", attn_implementation="sdpa")
    monkeypatch.setattr(forward, "_takes_mask_per_layer_kind", lambda model: False)
    with pytest.warns(UserWarning, match="differ in attention window"):
        assert not FastPaths().usable_with(model).packed


def test_dropout_is_off_unless_asked_for(family_dir, sample_pairs, tmp_path):
    """GPT-2 ships with dropout 0.1: with it on, the first loss is not log 2."""
    model_dir = family_dir("gpt2")
    kept = _train(model_dir, sample_pairs, tmp_path / "kept", False, disable_dropout=False,
                  max_steps=1)
    assert abs(kept[0]["loss"] - math.log(2)) > 1e-3
    off = _train(model_dir, sample_pairs, tmp_path / "off", False, max_steps=1)
    assert off[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_the_router_loss_is_transformers_own_in_both_layouts(family_dir):
    model = load_model(str(family_dir("qwen3_moe")), "fp32", attn_implementation="sdpa").eval()
    rows = _rows()
    plain = FastPaths(False, False, False)
    batch = layout(rows, list(range(5)), 0, plain)
    with torch.no_grad():
        want = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     output_router_logits=True).aux_loss
        got = [score_batch(ResponseLogps(model, paths, router_aux=True),
                           layout(rows, list(range(5)), 0, paths)).router_aux
               for paths in (plain, FastPaths(), FastPaths(shared_prompt=False))]
    for value in got:
        torch.testing.assert_close(value, want.float(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_ld_sums_and_wpo_weights_match_the_plain_path(family, family_dir):
    """LD-DPO's weighted sums (alpha 0.5), their gradients and WPO's weights, packed and
    chunked as against full logits of padded sequences (soft-capped for Gemma 2)."""
    model = load_model(str(family_dir(family)), "fp32", attention_fallback=True,
                       attn_implementation="sdpa").eval()  # GPT-2's dropout off
    assert FastPaths().usable_with(model).packed  # the fast path claims this family
    rows = _rows()
    results = []
    for paths in (FastPaths(False, False, False, ld_alpha=0.5, wpo=True),
                  FastPaths(chunk_tokens=16, ld_alpha=0.5, wpo=True)):
        model.zero_grad()
        logps = score_batch(ResponseLogps(model, paths), layout(rows, list(range(5)), 0, paths))
        (0.7 * logps.chosen.sum() - logps.rejected.sum()).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((torch.cat([logps.chosen, logps.rejected]).detach(),
                        torch.cat([logps.chosen_weight, logps.rejected_weight]), grads))
    (sums, weights, grads), (fast_sums, fast_weights, fast_grads) = results
    sums_rel = float(((fast_sums - sums) / sums).abs().max())
    weights_rel = float(((fast_weights - weights) / weights).abs().max())
    grads_rel = float((fast_grads - grads).abs().max() / grads.abs().max())
    print(f"LD+WPO {family} sums {sums_rel:.1e} weights {weights_rel:.1e} grads {grads_rel:.1e}")
    assert sums_rel < 1e-5 and weights_rel < 1e-5 and grads_rel < 1e-5
    assert (weights > 0).all() and not fast_weights.requires_grad
