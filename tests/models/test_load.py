import pytest
import torch

from preftune.engine.logprobs import collate_pairs, sequence_logps
from preftune.errors import ExitCode, MissingError
from preftune.models.load import (
    MODEL_ALIASES,
    add_lora,
    load_model,
    load_tokenizer,
    resolve_model,
)


def test_aliases_and_hub_ids_resolve():
    assert resolve_model("qwen3-4b") == "Qwen/Qwen3-4B-Instruct-2507"
    assert resolve_model("gpt2") == "openai-community/gpt2"
    assert resolve_model("someone/some-model") == "someone/some-model"
    for name in ("pythia-2.8b", "pythia-6.9b", "zephyr", "qwen2.5-3b", "qwen2.5-7b", "qwen3-8b",
                 "qwen3-30b-a3b"):
        assert name in MODEL_ALIASES


def test_unknown_model_is_exit_4_with_aliases_and_local_path_hint():
    with pytest.raises(MissingError) as info:
        resolve_model("custom-model")
    error = info.value
    assert error.exit_code == ExitCode.MISSING
    assert error.message == "unknown model 'custom-model'"
    assert any("zephyr" in h and "tiny" in h for h in error.hints)
    assert any("local directory" in h for h in error.hints)


def test_directory_without_a_model(tmp_path):
    with pytest.raises(MissingError, match="holds no model"):
        resolve_model(str(tmp_path))


def test_four_bit_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU error path does not apply")
    with pytest.raises(MissingError, match="4-bit loading needs a CUDA GPU") as info:
        load_model("tiny", load_in_4bit=True)
    assert info.value.exit_code == 4


def test_lora_reference_is_the_base_model():
    """With adapters disabled the LoRA policy scores exactly as the untouched base model."""
    tokenizer = load_tokenizer("tiny")
    base = load_model("tiny").eval()
    policy = add_lora(load_model("tiny"), rank=4, alpha=8, dropout=0.0,
                      target_modules="all-linear").eval()
    with torch.no_grad():  # make the adapters matter: LoRA starts as a no-op
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    ids = tokenizer(["What is 2+2?", "Name a colour."]).input_ids
    answers = tokenizer(["Four.", "Blue."], add_special_tokens=False).input_ids
    wrong = tokenizer(["Five.", "Loud."], add_special_tokens=False).input_ids
    batch = collate_pairs(ids, answers, wrong, tokenizer.pad_token_id)
    with torch.no_grad():
        expected = sequence_logps(base, batch)
        adapted = sequence_logps(policy, batch)
        with policy.disable_adapter():
            disabled = sequence_logps(policy, batch)
    assert torch.equal(disabled.chosen, expected.chosen)
    assert torch.equal(disabled.rejected, expected.rejected)
    assert not torch.allclose(adapted.chosen, expected.chosen)


def test_a_missing_path_is_named_as_a_path(tmp_path):
    with pytest.raises(MissingError, match=r"no such directory: /nonexistent/run") as info:
        resolve_model("/nonexistent/run")
    assert info.value.exit_code == 4
    with pytest.raises(MissingError, match="no such directory: ./not-here"):
        resolve_model("./not-here", "tokenizer")
