import json

import datasets
from transformers import AutoModelForCausalLM

from preftune import TrainConfig, Trainer
from preftune.engine.report import Reporter

FAST = {"epochs": 3, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-3,
        "warmup_steps": 2, "max_length": 256, "max_prompt_length": 128}


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_on_a_list_then_evaluate_save_and_load(sample_pairs, tmp_path):
    records = _records(sample_pairs)
    trainer = Trainer(TrainConfig(**FAST, output_dir=str(tmp_path / "run")))
    before = Trainer(TrainConfig(**FAST)).evaluate(records[:32])
    result = trainer.train(records)
    assert result.run_dir == tmp_path / "run"
    assert result.metrics["accuracy"] > 0.9
    assert result.diagnosis is not None and (result.run_dir / "diagnosis.json").exists()
    assert (result.run_dir / "plots" / "loss.png").exists()
    scores = trainer.evaluate(records[:32])
    assert set(scores) >= {"preference_accuracy", "loss", "reward_margin"}
    assert scores["pairs"] == 32
    assert scores["preference_accuracy"] > 0.9 and scores["loss"] < before["loss"]
    assert before["reward_margin"] == 0.0  # the untrained model is its own reference

    saved = trainer.save_model(tmp_path / "exported")
    assert (saved / "adapter_config.json").exists() and (saved / "tokenizer.json").exists()
    model = Trainer.load_model(result.run_dir)
    assert type(model).__name__ == "PeftModelForCausalLM"
    assert type(Trainer.load_model(saved)).__name__ == "PeftModelForCausalLM"


def test_train_on_an_hf_dataset_with_keyword_options(sample_pairs, tmp_path):
    dataset = datasets.Dataset.from_list(_records(sample_pairs)[:24])
    trainer = Trainer(model_name="tiny", dpo_beta=0.2, max_steps=2, lora=False,
                      output_dir=str(tmp_path / "run"), **{k: v for k, v in FAST.items()})
    result = trainer.train(dataset)
    assert result.steps == 2
    assert trainer.config.beta == 0.2
    model = AutoModelForCausalLM.from_pretrained(result.run_dir / "final")
    assert model.config.model_type == "llama"


def test_conversational_data_goes_through_the_chat_template(tmp_path):
    from preftune.data.sample import iter_samples

    records = [{"prompt": [{"role": "user", "content": s.prompt}],
                "chosen": [{"role": "assistant", "content": s.responses[0]}],
                "rejected": [{"role": "assistant", "content": s.responses[-1]}]}
               for s in iter_samples(32, seed=2)]
    result = Trainer(TrainConfig(**FAST, output_dir=str(tmp_path / "run"),
                                 gradient_checkpointing=True)).train(records)
    assert result.metrics["accuracy"] > 0.9
    assert result.metrics["loss"] < result.first_metrics["loss"]


class Counting(Reporter):
    def __init__(self) -> None:
        self.references: list[bool] = []

    def reference(self, pairs: int, cached: bool) -> None:
        self.references.append(cached)


def test_reference_log_probs_are_computed_once_for_runs_that_share_them(sample_pairs, tmp_path):
    first, second = Counting(), Counting()
    Trainer(TrainConfig(**FAST, max_steps=1, beta=0.1, dataset=str(sample_pairs),
                        output_dir=str(tmp_path / "a"), n_examples=20)).train(reporter=first)
    Trainer(TrainConfig(**FAST, max_steps=1, beta=0.3, dataset=str(sample_pairs),
                        output_dir=str(tmp_path / "b"), n_examples=20)).train(reporter=second)
    assert first.references == [False]
    assert second.references == [True]
    third = Counting()
    Trainer(TrainConfig(**FAST, max_steps=1, dataset=str(sample_pairs),
                        output_dir=str(tmp_path / "c"), n_examples=21)).train(reporter=third)
    assert third.references == [False]  # different tokens, different key
