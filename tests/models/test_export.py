import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
import typer
import yaml
from huggingface_hub import errors as hub_errors
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from preftune.cli.merge import register
from preftune.errors import ExitCode, MissingError, UsageError
from preftune.fsutil import read_jsonl
from preftune.models.export import export_run
from preftune.models.load import load_model
from preftune.models.tiny import tiny_path

Q_PROJ = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def merged_export(lora_run, tmp_path_factory):
    return export_run(lora_run, tmp_path_factory.mktemp("exports") / "merged")


def front_matter(card):
    _, meta, body = card.split("---\n", 2)
    return yaml.safe_load(meta), body


class FakeHfApi:
    """Records what export asks of the hub; ``error`` makes create_repo raise it."""

    calls: list = []
    error: Exception | None = None

    def create_repo(self, repo_id, exist_ok=False, **kwargs):
        if self.error is not None:
            raise self.error
        self.calls.append(("create_repo", repo_id, exist_ok))

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, str(folder_path), files))


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.setattr(FakeHfApi, "calls", [])
    monkeypatch.setattr(FakeHfApi, "error", None)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_card_describes_base_data_algorithm_hyperparameters_and_metrics(lora_run,
                                                                         merged_export):
    record = json.loads((lora_run / "config.json").read_text())
    rows = read_jsonl(lora_run / "metrics.jsonl")
    last_train = [r for r in rows if "loss" in r][-1]
    last_eval = [r for r in rows if "eval/loss" in r][-1]
    meta, body = front_matter((merged_export / "README.md").read_text())

    assert meta["library_name"] == "transformers"
    assert meta["tags"] == ["preftune", "dpo", "lora"]
    assert "base_model" not in meta  # tiny is a local model, not a hub id
    assert "## Base model\n\n`tiny`" in body
    assert record["data"]["fingerprint"] in body
    assert f"| training pairs | {record['data']['train']['pairs']} |" in body
    for row in ("| algo | dpo |", "| beta | 0.1 |", "| learning_rate | 0.002 |",
                "| batch_size | 4 |", "| grad_accum | 1 |", "| lora_rank | 16 |",
                "| lora_alpha | 32 |", "| max_length | 256 |"):
        assert row in body
    assert f"| loss | {last_train['loss']:.6g} |" in body
    assert f"| eval/loss | {last_eval['eval/loss']:.6g} |" in body
    assert f"| step | {last_train['step']} |" in body
    assert f"| torch | {record['versions']['torch']} |" in body
    assert "AutoModelForCausalLM.from_pretrained" in body


def test_merged_export_loads_without_peft(merged_export):
    assert not (merged_export / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(merged_export, dtype=torch.float32)
    base = load_model("tiny", "fp32")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not torch.equal(model.get_submodule(Q_PROJ).weight, base.get_submodule(Q_PROJ).weight)
    assert (merged_export / "tokenizer.json").exists()


def test_no_merge_keeps_the_adapter(lora_run, tmp_path):
    out = export_run(lora_run, tmp_path / "adapter", merge=False)
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()
    meta, body = front_matter((out / "README.md").read_text())
    assert meta["library_name"] == "peft"
    assert "AutoPeftModelForCausalLM" in body


def test_a_full_fine_tuning_run_is_copied_with_its_card(lora_run, tmp_path):
    run = tmp_path / "full-run"
    run.mkdir()
    record = json.loads((lora_run / "config.json").read_text())
    record["config"].update(lora=False, model="Qwen/Qwen2.5-0.5B-Instruct")
    (run / "config.json").write_text(json.dumps(record))
    shutil.copy(lora_run / "metrics.jsonl", run / "metrics.jsonl")
    shutil.copytree(tiny_path(), run / "final")
    out = export_run(run, tmp_path / "out")
    assert (out / "model.safetensors").exists()
    meta, body = front_matter((out / "README.md").read_text())
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert meta["tags"] == ["preftune", "dpo"]
    assert "full fine-tuning" in body and "lora_rank" not in body


def test_push_creates_the_repo_and_uploads_the_export(lora_run, tmp_path, fake_hub):
    out = export_run(lora_run, tmp_path / "pushed", merge=False, push_to_hub="me/tiny-dpo")
    assert fake_hub.calls[0] == ("create_repo", "me/tiny-dpo", True)
    name, repo, folder, files = fake_hub.calls[1]
    assert (name, repo, folder) == ("upload_folder", "me/tiny-dpo", str(out))
    assert "README.md" in files and "adapter_model.safetensors" in files
    assert 'from_pretrained("me/tiny-dpo")' in (out / "README.md").read_text()


@pytest.mark.parametrize("error", [ConnectionError("Name or service not known"),
                                   hub_errors.HTTPError("[Errno -2] connect failed")])
def test_a_failed_push_is_exit_4_and_keeps_the_export(lora_run, tmp_path, fake_hub, error):
    fake_hub.error = error
    with pytest.raises(MissingError, match="cannot push") as info:
        export_run(lora_run, tmp_path / "out", merge=False, push_to_hub="me/tiny-dpo")
    assert info.value.exit_code == ExitCode.MISSING
    assert any("hf auth login" in h for h in info.value.hints)
    assert (tmp_path / "out" / "README.md").exists()


def test_export_refuses_what_is_not_a_run_or_would_replace_it(lora_run, tmp_path):
    with pytest.raises(UsageError, match="not a run directory"):
        export_run(tmp_path, tmp_path / "out")
    with pytest.raises(UsageError, match="would replace"):
        export_run(lora_run, lora_run)


def test_cli_export(lora_run, tmp_path):
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["export", str(lora_run), "--output",
                                      str(tmp_path / "cli"), "--no-merge"])
    assert result.exit_code == 0, result.output
    assert "README.md" in result.output and "adapter_model.safetensors" in result.output
    assert (tmp_path / "cli" / "adapter_config.json").exists()
