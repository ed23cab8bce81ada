import json

import pytest

from preftune.errors import UsageError
from preftune.models.locate import locate


def test_locate_checkpoints(trained_run):
    assert locate(trained_run).model_dir.endswith("final")
    latest = locate(trained_run, "latest")
    assert latest.model_dir.endswith("checkpoints/step-24/model")
    assert locate(trained_run, "step-8").model_dir.endswith("checkpoints/step-8/model")
    with pytest.raises(UsageError, match="no checkpoint 'step-99'") as info:
        locate(trained_run, "step-99")
    assert "step-8, step-16, step-24" in info.value.hints[0]
    manifest = [json.loads(line) for line in
                (trained_run / "checkpoints.jsonl").read_text().splitlines()]
    assert [r["name"] for r in manifest] == ["step-8", "step-16", "step-24"]


def test_locate_an_adapter_directory_and_a_model(trained_run):
    adapter = locate(trained_run / "final")
    assert adapter.is_adapter and adapter.run_config is None
    assert adapter.tokenizer_dir == str(trained_run / "final")
    checkpoint = locate(trained_run, "latest")
    assert checkpoint.is_adapter and checkpoint.base == "tiny"
    assert checkpoint.tokenizer_dir == str(trained_run / "final")  # checkpoints hold none
    model = locate("tiny")
    assert not model.is_adapter and model.model_dir == model.tokenizer_dir
    with pytest.raises(UsageError, match="--checkpoint needs a run directory"):
        locate("tiny", "latest")
