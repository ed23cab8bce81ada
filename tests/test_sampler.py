import pytest

from preftune.errors import UsageError
from preftune.sampler import Sampler


def test_sampler_completes_prompts_from_a_run(trained_run):
    sampler = Sampler(trained_run, temperature=0.8, max_tokens=12, seed=0)
    text = sampler.complete("How do I boil an egg?")
    assert isinstance(text, str) and text.strip()
    batch = sampler.sample(["Hi", [{"role": "user", "content": "2+2?"}]], num_samples=3)
    assert [len(c) for c in batch] == [3, 3]
    assert all(isinstance(t, str) for c in batch for t in c)


def test_greedy_is_deterministic_and_seeds_repeat(trained_run):
    greedy = Sampler(trained_run, temperature=0, max_tokens=8)
    assert greedy.complete("Hello") == greedy.complete("Hello")
    a = Sampler(trained_run, temperature=1.0, max_tokens=8, seed=3).sample(["Hi"], 2)
    b = Sampler(trained_run, temperature=1.0, max_tokens=8, seed=3).sample(["Hi"], 2)
    assert a == b


def test_prompts_use_the_chat_template(trained_run):
    sampler = Sampler(trained_run, max_tokens=4)
    assert sampler.render("Hi") == "<s><|user|>\nHi</s><|assistant|>\n"


def test_checkpoints_and_bad_settings(trained_run):
    assert Sampler(trained_run, checkpoint="step-8", max_tokens=2).located.model_dir.endswith(
        "step-8/model")
    with pytest.raises(UsageError, match="bad sampling settings"):
        Sampler(trained_run, top_p=0)
