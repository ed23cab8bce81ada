"""Dataset environments against the real trajectory API and a stand-in completions server.

The stand-in answers /v1/completions and /v1/chat/completions with n deterministic choices:
choice i is "ok" repeated i+1 times (2, 5, 8, 11 characters), or "ok" every time for a prompt
containing SAME. With ``token_ids`` on, choice i carries ids 500..500+i and log-probs
-0.1, -0.2, ... With a length reward of target 8 characters the scores of a group of four are
1 - |L - 8| / 8 = 0.25, 0.625, 1.0, 0.625.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from preftune.errors import ConfigError, DataError, MissingError, TrainingError
from preftune.models.load import load_tokenizer
from preftune.rl.envs import DatasetEnvConfig, DatasetEnvironment, Item
from preftune.rl.envs.base import PROMPT_LOGPROB, PROMPT_MASK
from preftune.rl.envs.dataset import load_rows, parse_split, slice_rows
from preftune.rl.pairs import to_pairs
from preftune.rl.trajectory_api import create_app

SCORES = [0.25, 0.625, 1.0, 0.625]


def completions_app(token_ids: bool = True) -> FastAPI:
    app = FastAPI()
    app.state.requests = []

    def choices(prompt: str, n: int, chat: bool) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            words = 1 if "SAME" in prompt else i + 1
            text = " ".join(["ok"] * words)
            lps = [-0.1 * (j + 1) for j in range(words)]
            choice: dict[str, Any] = {"index": i, "finish_reason": "stop"}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
                choice["logprobs"] = {"content": [{"token": "ok", "logprob": v} for v in lps]}
            else:
                choice["text"] = text
                choice["logprobs"] = {"tokens": ["ok"] * words, "token_logprobs": lps}
            if token_ids:
                choice["token_ids"] = [500 + j for j in range(words)]
            out.append(choice)
        return out

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> dict[str, Any]:
        app.state.requests.append(body)
        return {"object": "text_completion", "choices": choices(body["prompt"], body["n"], False)}

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        app.state.requests.append(body)
        prompt = body["messages"][-1]["content"]
        return {"object": "chat.completion", "choices": choices(prompt, body["n"], True)}

    return app


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"question": f"Question number {i}?", "answer": str(i)} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_env(tokenizer, data, url: str, **overrides: Any) -> DatasetEnvironment:
    values: dict[str, Any] = {
        "dataset_name": str(data), "prompt_field": "question", "group_size": 4,
        "max_num_workers": 2, "tokenizer_name": "tiny", "base_url": url, "model_name": "tiny",
        "reward_functions": [{"type": "length", "params": {"target": 8}}],
        "max_tokens": 16, "temperature": 0.7, "poll_interval": 0.05}
    values.update(overrides)
    return DatasetEnvironment(DatasetEnvConfig(**values), tokenizer=tokenizer)


def test_a_group_has_prompt_masks_ids_logprobs_and_scores(tokenizer, data, serving):
    app = completions_app()
    with serving(app) as url:
        env = make_env(tokenizer, data, url + "/v1")  # a base_url ending in /v1 works too
        item = env.next_item()
        assert item is not None and item.prompt == "Question number 0?"
        group = env.collect_group(item)
    assert group is not None
    request = app.state.requests[0]
    assert request == {"model": "tiny", "n": 4, "max_tokens": 16, "temperature": 0.7,
                       "prompt": "Question number 0?", "logprobs": 1,
                       "return_token_ids": True}
    prompt_ids = tokenizer("Question number 0?")["input_ids"]
    for i in range(4):
        ids = [500 + j for j in range(i + 1)]
        assert group.tokens[i] == prompt_ids + ids
        assert group.masks[i] == [PROMPT_MASK] * len(prompt_ids) + ids
        assert group.inference_logprobs is not None
        assert group.inference_logprobs[i] == pytest.approx(
            [PROMPT_LOGPROB] * len(prompt_ids) + [-0.1 * (j + 1) for j in range(i + 1)])
    assert group.scores == pytest.approx(SCORES)
    assert group.completions == ["ok", "ok ok", "ok ok ok", "ok ok ok ok"]
    assert group.rewards[0] == {"length": pytest.approx(0.25)}


def test_without_token_ids_the_text_is_tokenized_and_chat_uses_the_template(tokenizer, data,
                                                                             serving):
    with serving(completions_app(token_ids=False)) as url:
        env = make_env(tokenizer, data, url, use_chat=True, system_prompt="Be brief.")
        item = env.next_item()
        assert item is not None
        group = env.collect_group(item)
    assert group is not None
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Question number 0?"}]
    assert group.messages == messages
    prompt_ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                    tokenize=True, return_dict=True)["input_ids"])
    ids = tokenizer("ok ok", add_special_tokens=False)["input_ids"]
    assert group.tokens[1] == prompt_ids + ids
    assert group.masks[1] == [PROMPT_MASK] * len(prompt_ids) + ids
    # The server sent one log-prob per word but "ok" retokenizes to two ids: log-probs that
    # do not line up with the tokens are left out for the whole group, never misaligned.
    assert len(ids) == 4 and group.inference_logprobs is None


def test_groups_with_equal_scores_are_dropped_only_when_asked(tokenizer, data, serving):
    same = Item("Say SAME please", {"question": "Say SAME please"})
    with serving(completions_app()) as url:
        assert make_env(tokenizer, data, url, ensure_scores_are_not_same=True
                        ).collect_group(same) is None
        kept = make_env(tokenizer, data, url).collect_group(same)
    assert kept is not None and kept.scores == pytest.approx([0.25] * 4)


def test_sequences_over_max_token_length_are_dropped(tokenizer, data, serving):
    prompt_len = len(tokenizer("Question number 0?")["input_ids"])
    with serving(completions_app()) as url:
        env = make_env(tokenizer, data, url, max_token_length=prompt_len + 2)
        item = env.next_item()
        assert item is not None
        group = env.collect_group(item)
        assert group is not None and group.completions == ["ok", "ok ok"]
        assert group.scores == pytest.approx(SCORES[:2])
        env = make_env(tokenizer, data, url, max_token_length=prompt_len)
        assert env.collect_group(item) is None


TRAINER = {"batch_size": 8, "max_token_len": 512, "checkpoint_dir": "/tmp/ckpt",
           "save_checkpoint_interval": 0, "starting_step": 0, "num_steps": 100}


def test_serve_waits_for_the_trainer_then_sends_every_group(tokenizer, data, serving):
    with serving(create_app()) as api, serving(completions_app()) as url:
        env = make_env(tokenizer, data, url, rollout_server_url=api, wandb_name="ds")
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(summary=env.serve()))
        thread.start()
        time.sleep(0.2)  # the env is polling /register-env: the trainer has not started
        assert thread.is_alive()
        assert httpx.post(f"{api}/register", json=TRAINER).status_code == 200
        assert httpx.get(f"{api}/batch").json() == {"batch": None}
        thread.join(timeout=30)
        assert not thread.is_alive()
        summary = result["summary"]
        assert (summary.sent, summary.dropped, summary.stopped_by_trainer) == (6, 0, False)
        batches = [httpx.get(f"{api}/batch").json()["batch"] for _ in range(4)]
    assert batches[3] is None  # 6 groups of 4 make 3 batches of 8
    groups = [g for batch in batches[:3] for g in batch]
    assert len(groups) == 6 and all(g["env_id"] == 0 for g in groups)
    assert all(g["scores"] == pytest.approx(SCORES) for g in groups)
    prompts = sorted(tokenizer.decode([t for t, m in zip(g["tokens"][0], g["masks"][0],
                                                          strict=True) if m == PROMPT_MASK],
                                      skip_special_tokens=True) for g in groups)
    assert prompts == [f"Question number {i}?" for i in range(6)]


def test_serve_stops_when_the_queue_covers_the_trainers_steps(tokenizer, data, serving):
    with serving(create_app()) as api, serving(completions_app()) as url:
        httpx.post(f"{api}/register", json={**TRAINER, "num_steps": 1})
        httpx.get(f"{api}/batch")
        env = make_env(tokenizer, data, url, rollout_server_url=api, max_num_workers=1)
        summary = env.serve()
        status = httpx.get(f"{api}/status").json()
    # Two groups of 4 fill the one batch of 8 the trainer will take.
    assert (summary.sent, summary.stopped_by_trainer) == (2, True)
    assert status == {"current_step": 0, "queue_size": 2}


def test_process_writes_groups_that_to_pairs_turns_into_training_data(tokenizer, data, serving,
                                                                       tmp_path):
    from preftune.data.validate import load_preferences

    with serving(completions_app()) as url:
        env = make_env(tokenizer, data, url, seed=3, system_prompt="Answer.")
        written = env.process(tmp_path / "groups.jsonl", 4)
    rows = [json.loads(line) for line in (tmp_path / "groups.jsonl").read_text().splitlines()]
    assert written == len(rows) == 4
    assert {r["prompt"] for r in rows} < {f"Question number {i}?" for i in range(6)}
    assert all(r["system"] == "Answer." and r["scores"] == pytest.approx(SCORES) for r in rows)
    assert all(len(r["tokens"]) == len(r["masks"]) == len(r["completions"]) == 4 for r in rows)
    summary = to_pairs(tmp_path / "groups.jsonl", tmp_path / "pairs.jsonl")
    assert (summary.groups, summary.pairs) == (4, 4)
    pairs = load_preferences(str(tmp_path / "pairs.jsonl"))
    assert len(pairs) == 4
    first = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert (first["chosen"], first["rejected"], first["system"]) == ("ok ok ok", "ok", "Answer.")


def test_evaluate_averages_every_reward_over_the_eval_split(tokenizer, data, serving):
    rewards = [{"type": "length", "params": {"target": 8}},
               {"type": "length", "weight": 2.0, "params": {"target": 2}}]
    with serving(completions_app()) as url:
        env = make_env(tokenizer, data, url, eval_split="train[4:]", reward_functions=rewards)
        report = env.evaluate()
        with pytest.raises(ConfigError, match="eval_split"):
            make_env(tokenizer, data, url).evaluate()
    # target 2: lengths 2, 5, 8, 11 give 1, 0, 0, 0 → mean 0.25; total = 0.625 + 2 * 0.25
    assert (report.items, report.completions) == (2, 8)
    assert report.reward_means == pytest.approx({"length": 0.625, "length#2": 0.25})
    assert report.mean_reward == pytest.approx(1.125)


def test_split_slicing_for_local_sample_and_saved_sources(tmp_path, data):
    assert parse_split("train") == ("train", None)
    assert parse_split("train[:100]") == ("train", (None, "100"))
    assert parse_split("test[-10%:]") == ("test", ("-10%", None))
    with pytest.raises(ConfigError, match="split"):
        parse_split("train[1]")
    rows = [{"i": i} for i in range(50)]
    assert slice_rows(rows, (None, "10%")) == rows[:5]
    assert slice_rows(rows, ("-3", None)) == rows[-3:]
    assert [r["answer"] for r in load_rows(str(data), None, "train[1:3]")] == ["1", "2"]
    with pytest.raises(ConfigError, match="one split"):
        load_rows(str(data), None, "test")
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,answer\nfirst,1\nsecond,2\nthird,3\n", encoding="utf-8")
    assert load_rows(str(csv), None, "train[-1:]") == [{"prompt": "third", "answer": "3"}]
    samples = load_rows("sample:8", None, "train[:3]", seed=1)
    assert len(samples) == 3 and samples == load_rows("sample:8", None, "train", seed=1)[:3]
    assert set(samples[0]) == {"prompt", "answer", "category"}

    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:4]),
                          "test": datasets.Dataset.from_list(rows[4:10])}).save_to_disk(saved)
    assert load_rows(str(saved), None, "test[:2]") == [{"i": 4}, {"i": 5}]


def test_hub_ids_go_to_load_dataset_with_config_and_split(monkeypatch):
    import datasets

    calls = []

    def fake_load(name: str, config: str | None, split: str) -> list[dict[str, Any]]:
        calls.append((name, config, split))
        if name == "missing/dataset":
            raise FileNotFoundError("no such dataset")
        return [{"question": "q"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_rows("openai/gsm8k", "main", "train[:100]") == [{"question": "q"}]
    assert calls == [("openai/gsm8k", "main", "train[:100]")]
    with pytest.raises(MissingError, match="missing/dataset"):
        load_rows("missing/dataset", None, "train")


def test_a_row_without_the_prompt_field_is_a_data_error(tokenizer, data):
    with pytest.raises(DataError, match="row 0: prompt_field 'prompt' is missing") as e:
        make_env(tokenizer, data, "http://127.0.0.1:1", prompt_field="prompt")
    assert "question" in e.value.hints[0]


def test_the_tiny_config_end_to_end_with_preftunes_inference_server(serving, tmp_path):
    """The bundled tiny config against the real server: its token_ids become the tokens."""
    from preftune.data.validate import load_preferences
    from preftune.rl.envconfig import load_env_config
    from preftune.rl.inference import create_app as inference_app

    with serving(inference_app("tiny", seed=0)) as url:
        cfg = load_env_config("tiny", {"base_url": url, "max_tokens": 12,
                                       "ensure_scores_are_not_same": False})
        env = DatasetEnvironment(cfg)
        item = env.next_item()
        assert item is not None
        completions = env.sample(item)
        group = env.score(item, completions)
        assert env.process(tmp_path / "groups.jsonl", 3) == 3
    assert group is not None and len(group.tokens) == 4
    prompt_ids = env.tokenizer(item.prompt)["input_ids"]
    for completion, tokens, mask in zip(completions, group.tokens, group.masks, strict=True):
        assert completion.token_ids is not None and 0 < len(completion.token_ids) <= 12
        assert tokens == prompt_ids + completion.token_ids
        assert mask == [PROMPT_MASK] * len(prompt_ids) + completion.token_ids
    assert group.inference_logprobs is not None
    assert all(lp <= 0 for lp in group.inference_logprobs[0][len(prompt_ids):])
    summary = to_pairs(tmp_path / "groups.jsonl", tmp_path / "pairs.jsonl")
    assert len(load_preferences(str(tmp_path / "pairs.jsonl"))) == summary.pairs > 0


def test_sampling_retries_a_moment_of_404_and_gives_up_after_the_retries(tokenizer, data,
                                                                        serving, monkeypatch):
    """An older vLLM unloads the adapter name and loads it again: for a moment it is 404."""
    import preftune.rl.envs.base as base

    monkeypatch.setattr(base, "RETRY_WAIT_S", 0.01)
    app = completions_app()
    failures = {"left": 2}

    @app.middleware("http")
    async def missing_for_a_moment(request, call_next):
        if failures["left"] > 0:
            failures["left"] -= 1
            from fastapi.responses import JSONResponse

            return JSONResponse({"error": {"message": "The model `tiny` does not exist."}},
                                status_code=404)
        return await call_next(request)

    with serving(app) as url:
        env = make_env(tokenizer, data, url)
        assert env.collect_group(env.next_item()) is not None
        assert failures["left"] == 0 and len(app.state.requests) == 1
        failures["left"] = 5
        stubborn = make_env(tokenizer, data, url, request_retries=1)
        with pytest.raises(TrainingError, match="answered 404"):
            stubborn.collect_group(stubborn.next_item())
    assert failures["left"] == 3  # one try and one retry


# ---- chat prompts from a messages field (OpenAI's RFT items) --------------------------------


@pytest.fixture
def rft_data(tmp_path):
    path = tmp_path / "rft.jsonl"
    rows = [{"messages": [{"role": "developer", "content": "Answer with a number."},
                          {"role": "user", "content": [{"type": "text", "text": "2 + "},
                                                       {"type": "text", "text": f"{i}?"}]}],
             "reference_answer": str(2 + i)} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_items_from_a_messages_field_are_sampled_as_that_conversation(tokenizer, rft_data,
                                                                      serving):
    app = completions_app()
    with serving(app) as url:
        env = make_env(tokenizer, rft_data, url, use_chat=True, messages_field="messages",
                       prompt_field="unused", answer_field="reference_answer")
        item = env.next_item()
        assert item is not None
        group = env.collect_group(item)
    conversation = [{"role": "system", "content": "Answer with a number."},
                    {"role": "user", "content": "2 + 0?"}]
    assert app.state.requests[0]["messages"] == conversation
    assert item.prompt == "2 + 0?" and item.row["reference_answer"] == "2"
    assert group is not None and group.messages == conversation
    prompt_ids = list(tokenizer.apply_chat_template(conversation, add_generation_prompt=True,
                                                    tokenize=True, return_dict=True)["input_ids"])
    assert group.tokens[0] == prompt_ids + [500]


def test_a_messages_field_needs_chat(tokenizer, rft_data):
    with pytest.raises(ConfigError, match="needs use_chat"):
        make_env(tokenizer, rft_data, "http://127.0.0.1:9", messages_field="messages")


@pytest.mark.parametrize(("row", "problem"), [
    ({"prompt": "x"}, "field 'messages' is missing"),
    ({"messages": []}, "expected a non-empty list of messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role: expected one of"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 7}]},
     "messages[1].content: expected text"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]},
     "no message has role 'user'"),
])
def test_a_bad_conversation_is_a_data_error_naming_row_and_key(tokenizer, tmp_path, row,
                                                               problem):
    path = tmp_path / "bad.jsonl"
    good = {"messages": [{"role": "user", "content": "fine"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        make_env(tokenizer, path, "http://127.0.0.1:9", use_chat=True, messages_field="messages")
    assert raised.value.message.endswith(problem) or problem in raised.value.message
    assert "row 1:" in raised.value.message


def test_epochs_pass_over_the_rows_again_each_pass_shuffled_anew(tokenizer, data, serving):
    with serving(completions_app()) as url:
        env = make_env(tokenizer, data, url, epochs=3, seed=1)
        prompts = [item.prompt for item in env._train_items()]
        once = [item.prompt for item in make_env(tokenizer, data, url, seed=1)._train_items()]
    passes = [prompts[0:6], prompts[6:12], prompts[12:18]]
    assert len(prompts) == 18 and passes[0] == once  # the first pass as one pass would be
    assert all(sorted(p) == sorted(once) for p in passes) and passes[1] != passes[0]


def test_serve_evaluates_on_schedule_and_logs_each_result(tokenizer, data, serving, tmp_path):
    """Evaluation at the trainer's first step and every 2 steps after, from eval_dataset_name
    (two rows of two completions each); paced a batch ahead of a trainer that takes a batch
    (one group) a moment after each arrives."""
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"question": f"Held out {i}?"}) + "\n"
                                for i in range(2)), encoding="utf-8")
    log_path = tmp_path / "eval.jsonl"
    with serving(create_app()) as api, serving(completions_app()) as url:
        httpx.post(f"{api}/register", json={**TRAINER, "batch_size": 4, "num_steps": 5})
        env = make_env(tokenizer, data, url, rollout_server_url=api, max_num_workers=1,
                       eval_dataset_name=str(held_out), eval_split="train",
                       eval_every_steps=2, eval_group_size=2, eval_log=str(log_path),
                       max_batches_offpolicy=1)
        taken = []

        def trainer():
            while len(taken) < 5:
                batch = httpx.get(f"{api}/batch").json()["batch"]
                if batch is not None:
                    taken.append(batch)
                time.sleep(0.05)

        thread = threading.Thread(target=trainer)
        thread.start()
        summary = env.serve()
        thread.join(timeout=30)
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert summary.sent == 5 and len(taken) == 5
    steps = [r["step"] for r in rows]
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 2
    assert all(b - a >= 2 for a, b in zip(steps, steps[1:], strict=False))
    # lengths 2 and 5 against target 8: 0.25 and 0.625
    assert all(r["eval/items"] == 2 and r["eval/completions"] == 4 for r in rows)
    assert rows[0]["eval/mean_reward"] == pytest.approx(0.4375)
    assert rows[0]["eval/reward_std"] == pytest.approx(0.1875)
    assert rows[0]["eval/reward/length"] == pytest.approx(0.4375)
    with pytest.raises(ConfigError, match="eval_every_steps needs eval_split"):
        make_env(tokenizer, data, url, eval_every_steps=2)


def test_max_batches_offpolicy_keeps_the_environment_a_batch_ahead(tokenizer, data, serving):
    with serving(create_app()) as api, serving(completions_app()) as url:
        httpx.post(f"{api}/register", json={**TRAINER, "batch_size": 4, "num_steps": 4})
        httpx.get(f"{api}/batch")  # the trainer has started
        env = make_env(tokenizer, data, url, rollout_server_url=api, max_num_workers=1,
                       max_batches_offpolicy=1)
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(summary=env.serve()))
        thread.start()
        time.sleep(1.0)
        waiting = httpx.get(f"{api}/status").json()["queue_size"]
        assert waiting == 1  # one group (one batch) waits; the environment waits with it
        httpx.get(f"{api}/batch")
        deadline = time.monotonic() + 10
        while httpx.get(f"{api}/status").json()["queue_size"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert httpx.get(f"{api}/status").json()["queue_size"] == 1
        deadline = time.monotonic() + 10
        while thread.is_alive():  # the trainer takes its batches; the environment then ends
            assert time.monotonic() < deadline
            httpx.get(f"{api}/batch")
            time.sleep(0.05)
    assert result["summary"].sent == 4 and result["summary"].stopped_by_trainer
