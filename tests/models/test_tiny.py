import hashlib

from transformers import AutoModelForCausalLM, AutoTokenizer

from preftune.models.tiny import build_tiny, tiny_path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_is_built_once_and_deterministically(tmp_path):
    first = tiny_path()
    assert tiny_path() == first  # cached: the second call builds nothing
    other = tmp_path / "again"
    build_tiny(other)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(first / name) == _digest(other / name), name


def test_tiny_loads_like_any_model_and_its_template_keeps_the_prompt_a_prefix():
    tokenizer = AutoTokenizer.from_pretrained(tiny_path())
    model = AutoModelForCausalLM.from_pretrained(tiny_path())
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tokenizer)
    assert tokenizer("Hello world").input_ids[0] == tokenizer.bos_token_id
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    rendered = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "Hello"}],
                                         tokenize=False)
    assert full.startswith(rendered) and full.endswith("Hello</s>")
