import hashlib
import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from preftune.models.tiny import VOCAB_SIZE, build_tiny, tiny_path

# sha256 of the tiny tokenizer's vocabulary (token, id) in id order and its merges, as compact
# JSON. It is trained on the sample generator's records, so an edit to the sample tables or to
# the tokenizer recipe changes it: a deliberate change updates this value (and bumps
# tiny.VERSION, so cached builds are not reused).
PINNED_VOCAB_AND_MERGES = "f77eef6412799d7cb42ac2e5efd2613e68cb407b633cc2d857f95a98b5da26f6"


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


def test_tokenizer_vocabulary_and_merges_are_pinned():
    model = json.loads((tiny_path() / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    vocab = sorted(model["vocab"].items(), key=lambda item: item[1])
    # tokenizers wrote merges as "a b" strings before 0.20 and as [a, b] pairs since.
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    assert len(vocab) == VOCAB_SIZE
    payload = json.dumps({"vocab": vocab, "merges": merges}, ensure_ascii=False,
                         separators=(",", ":"))
    assert hashlib.sha256(payload.encode()).hexdigest() == PINNED_VOCAB_AND_MERGES
