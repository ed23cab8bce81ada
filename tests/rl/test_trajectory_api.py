"""The trajectory API: registration, fair whole-group batches, status, validation, and
atroposlib 0.4's own environment and trainer code talking to it over HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from preftune.rl.trajectory_api import create_app

TRAINER = {"wandb_group": "g", "wandb_project": "p", "batch_size": 12, "max_token_len": 64,
           "checkpoint_dir": "/tmp/ckpt", "save_checkpoint_interval": 5, "starting_step": 0,
           "num_steps": 100}


def env_body(name: str, weight: float = 1.0, group_size: int = 4, **extra: Any) -> dict:
    return {"max_token_length": 64, "desired_name": name, "weight": weight,
            "group_size": group_size, **extra}


def group(env_id: int | None, tag: int, size: int = 4) -> dict:
    """A group whose first token ``tag`` identifies it and whose length is ``size``."""
    tokens = [[tag, j, 7] for j in range(size)]
    return {"tokens": tokens, "masks": [[-100, t[1], 7] for t in tokens],
            "scores": [float(j) for j in range(size)], "env_id": env_id}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def start(client: TestClient, batch_size: int = 12, **envs: tuple[float, int]) -> list[int]:
    """Register the trainer, poll once (which lets envs in), register ``name=(weight, size)``."""
    assert client.post("/register", json={**TRAINER, "batch_size": batch_size}).status_code == 200
    assert client.get("/batch").json() == {"batch": None}
    ids = []
    for name, (weight, size) in envs.items():
        answer = client.post("/register-env", json=env_body(name, weight, size)).json()
        assert answer["status"] == "success"
        ids.append(answer["env_id"])
    return ids


def test_registration_info_and_the_env_handshake(client):
    assert client.get("/info").json() == {"batch_size": -1, "max_token_len": -1}
    assert client.get("/batch").json() == {
        "status": "error", "message": "Trainer not registered. Call /register first.",
        "batch": []}
    first = client.post("/register", json=TRAINER).json()
    second = client.post("/register", json={**TRAINER, "batch_size": 99}).json()
    assert isinstance(first["uuid"], int) and first["uuid"] != second["uuid"]
    # The first registration holds: a second rank does not reconfigure the run.
    assert client.get("/info").json() == {"batch_size": 12, "max_token_len": 64}
    assert client.get("/wandb_info").json() == {"group": "g", "project": "p"}

    # Envs wait until the trainer has polled for a batch once, as atroposlib makes them.
    assert client.post("/register-env", json=env_body("math")).json() == {
        "status": "wait for trainer to start"}
    assert client.get("/batch").json() == {"batch": None}
    answers = [client.post("/register-env", json=env_body(n)).json()
               for n in ("math", "math", "code")]
    assert answers[0] == {"status": "success", "env_id": 0, "wandb_name": "math_0",
                          "checkpoint_dir": "/tmp/ckpt", "starting_step": 0,
                          "checkpoint_interval": 5, "num_steps": 100}
    assert [(a["env_id"], a["wandb_name"]) for a in answers[1:]] == [(1, "math_1"),
                                                                     (2, "code_0")]


def test_batch_is_null_until_whole_groups_fill_it(client):
    (env,) = start(client, batch_size=12, math=(1.0, 4))
    for tag in range(2):
        assert client.post("/scored_data", json=group(env, tag)).json() == {"status": "received"}
    assert client.get("/batch").json() == {"batch": None}  # 8 of 12 sequences
    assert client.get("/status").json() == {"current_step": 0, "queue_size": 2}

    client.post("/scored_data", json=group(env, 2))
    batch = client.get("/batch").json()["batch"]
    assert [g["tokens"][0][0] for g in batch] == [0, 1, 2]
    assert batch[0] == {**group(env, 0), "advantages": None, "ref_logprobs": None,
                        "messages": None, "generation_params": None,
                        "inference_logprobs": None, "overrides": None,
                        "group_overrides": None, "images": None, "distill_token_ids": None,
                        "distill_logprobs": None}
    assert client.get("/status").json() == {"current_step": 1, "queue_size": 0}
    assert client.get("/batch").json() == {"batch": None}


def test_batches_follow_env_weights_and_never_split_a_group(client):
    # Weights 2:1 with different group sizes: each batch of 12 should be 8 from a, 4 from b.
    a, b = start(client, batch_size=12, a=(2.0, 4), b=(1.0, 2))
    sent = {a: [group(a, 1000 + i, 4) for i in range(100)],
            b: [group(b, 2000 + i, 2) for i in range(150)]}
    # Interleaved and b first, so arrival order alone would not give 2:1.
    assert client.post("/scored_data_list", json=sent[b]).json() == {
        "status": "received", "groups_processed": 150}
    assert client.post("/scored_data_list", json=sent[a]).json()["groups_processed"] == 100

    served: dict[int, list[dict]] = {a: [], b: []}
    totals: Counter[int] = Counter()
    for _ in range(30):
        batch = client.get("/batch").json()["batch"]
        assert sum(len(g["tokens"]) for g in batch) == 12
        for g in batch:
            served[g["env_id"]].append(g)
            totals[g["env_id"]] += len(g["tokens"])
    assert totals[a] == 2 * totals[b] == 240
    # Whole groups, exactly as sent, each env's in the order it sent them.
    for env in (a, b):
        assert [{k: g[k] for k in sent[env][0]} for g in served[env]] == \
            sent[env][:len(served[env])]
    assert client.get("/status").json() == {"current_step": 30,
                                            "queue_size": (100 - 60) + (150 - 60)}


def test_an_idle_env_does_not_bank_turns(client):
    a, b = start(client, batch_size=12, a=(2.0, 4), b=(1.0, 4))
    for i in range(15):  # a alone for five batches
        client.post("/scored_data", json=group(a, i))
    for _ in range(5):
        assert {g["env_id"] for g in client.get("/batch").json()["batch"]} == {a}
    client.post("/scored_data_list", json=[group(b, 100 + i) for i in range(6)])
    client.post("/scored_data_list", json=[group(a, 200 + i) for i in range(6)])
    # b now gets its weighted share, not the five batches it missed.
    shares = [Counter(g["env_id"] for g in client.get("/batch").json()["batch"])
              for _ in range(3)]
    assert sum(shares, Counter()) == Counter({a: 6, b: 3})


def test_a_minimum_allocation_comes_first_and_holds_back_the_batch(client):
    client.post("/register", json={**TRAINER, "batch_size": 8})
    client.get("/batch")
    a = client.post("/register-env", json=env_body("a", 100.0, 2)).json()["env_id"]
    b = client.post("/register-env", json=env_body("b", 1.0, 2,
                                                   min_batch_allocation=0.5)).json()["env_id"]
    client.post("/scored_data_list", json=[group(a, i, 2) for i in range(8)])
    assert client.get("/batch").json() == {"batch": None}  # b owes 4 sequences and has none
    client.post("/scored_data_list", json=[group(b, 100 + i, 2) for i in range(2)])
    batch = client.get("/batch").json()["batch"]
    assert Counter(g["env_id"] for g in batch) == Counter({a: 2, b: 2})
    assert client.request("GET", "/status-env", json={"env_id": a}).json()[
        "unallocated_fraction"] == 0.5


def test_groups_that_cannot_make_the_batch_exactly_wait(client):
    (env,) = start(client, batch_size=10, e=(1.0, 4))
    client.post("/scored_data_list", json=[group(env, i, 4) for i in range(5)])
    assert client.get("/batch").json() == {"batch": None}  # 4 + 4 leaves 2 that no group fits
    client.post("/scored_data", json=group(env, 9, 2))
    assert [len(g["tokens"]) for g in client.get("/batch").json()["batch"]] == [4, 4, 2]


def test_status_env_reports_queue_and_atropos_weight(client):
    a, b = start(client, batch_size=12, a=(1.0, 4), b=(3.0, 2))
    client.post("/scored_data_list", json=[group(a, 1, 4), group(b, 2, 2), group(b, 3, 2)])
    # atroposlib's client sends the env id as a JSON body on a GET.
    status = client.request("GET", "/status-env", json={"env_id": b}).json()
    assert status == {"current_step": 0, "queue_size": 4, "unallocated_fraction": 1.0,
                      "self_queue_size": 2, "max_group_size": 4, "env_weight": 0.75}
    assert client.request("GET", "/status-env", json={"env_id": a}).json()["env_weight"] == 0.25
    missing = client.request("GET", "/status-env", json={"env_id": 5})
    assert missing.status_code == 404 and "env_id 5 is not registered" in missing.json()["detail"]

    assert client.post("/disconnect-env", json={"env_id": a}).json() == {"status": "success"}
    assert client.request("GET", "/status-env", json={"env_id": b}).json()["env_weight"] == 1.0
    assert client.post("/disconnect-env", json={"env_id": 9}).json() == {
        "status": "failure", "error": "env_id 9 is not registered"}


def test_latest_example_and_reset(client):
    empty = client.get("/latest_example").json()
    assert empty["tokens"] == [] and empty["scores"] == []
    (env,) = start(client, e=(1.0, 4))
    client.post("/scored_data", json={**group(env, 1), "messages": [
        [{"role": "user", "content": "hi"}]] * 4, "group_overrides": {"group_size": 4}})
    client.post("/scored_data", json=group(env, 2))
    assert client.get("/latest_example").json()["tokens"][0][0] == 2

    reset = client.get("/reset_data")
    assert reset.status_code == 200 and reset.text == "Reset successful"
    assert client.get("/status").json() == {"current_step": 0, "queue_size": 0}
    assert client.get("/info").json() == {"batch_size": -1, "max_token_len": -1}
    assert client.get("/latest_example").json()["tokens"] == []
    assert client.post("/scored_data", json=group(env, 3)).status_code == 422  # env is gone


def test_starting_step_carries_into_status_and_env_registration(client):
    client.post("/register", json={**TRAINER, "starting_step": 40})
    client.get("/batch")
    assert client.post("/register-env", json=env_body("e")).json()["starting_step"] == 40
    assert client.get("/status").json()["current_step"] == 40


def _bad(group_fields: dict) -> dict:
    return {**group(0, 1), **group_fields}


@pytest.mark.parametrize(("path", "body", "loc", "words"), [
    ("/scored_data", _bad({"masks": [[-100, 1, 7]] * 3}), ["body", "masks"],
     "masks has 3 entries but tokens has 4 sequences"),
    ("/scored_data", _bad({"scores": [1.0, 2.0]}), ["body", "scores"],
     "scores has 2 entries but tokens has 4 sequences"),
    ("/scored_data", _bad({"inference_logprobs": [[0.0]]}), ["body", "inference_logprobs"],
     "inference_logprobs has 1 entries"),
    ("/scored_data", _bad({"masks": [[-100, 1]] * 4}), ["body", "masks"],
     "masks[0] has 2 positions but tokens[0] has 3"),
    ("/scored_data", _bad({"tokens": []}), ["body", "tokens"], "at least 1 item"),
    ("/scored_data", {"masks": [[1]], "scores": [1.0]}, ["body", "tokens"], "Field required"),
    ("/scored_data", _bad({"scores": ["high", 1, 2, 3]}), ["body", "scores", 0], "valid number"),
    ("/scored_data", _bad({"messages": [[{"content": "x"}]] * 4}), ["body", "messages"],
     "messages[0][0] needs both 'role' and 'content'"),
    ("/scored_data", _bad({"env_id": 3}), ["body", "env_id"],
     "env_id 3 is not registered (1 envs are)"),
    ("/scored_data", group(0, 1, size=16), ["body", "tokens"],
     "tokens has 16 sequences but a batch holds 12"),
    ("/scored_data_list", [group(0, 1), _bad({"scores": [0.0]})], ["body", 1, "scores"],
     "scores has 1 entries"),
    ("/register-env", {**env_body("e"), "group_size": 0}, ["body", "group_size"],
     "greater than 0"),
    ("/register", {**TRAINER, "batch_size": 0}, ["body", "batch_size"], "greater than 0"),
    ("/register", {k: v for k, v in TRAINER.items() if k != "num_steps"},
     ["body", "num_steps"], "Field required"),
])
def test_bad_payloads_are_422_naming_the_field(client, path, body, loc, words):
    start(client, e=(1.0, 4))
    answer = client.post(path, json=body)
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == loc and words in problem["msg"], problem
    assert client.get("/status").json()["queue_size"] == 0  # nothing half-accepted


def test_gzip_request_bodies(client):
    (env,) = start(client, batch_size=4, e=(1.0, 4))
    payload = gzip.compress(json.dumps(group(env, 5)).encode())
    answer = client.post("/scored_data", content=payload,
                         headers={"Content-Type": "application/json",
                                  "Content-Encoding": "gzip"})
    assert answer.json() == {"status": "received"}
    assert client.get("/batch").json()["batch"][0]["tokens"][0][0] == 5
    broken = client.post("/scored_data", content=b"not gzip",
                         headers={"Content-Type": "application/json",
                                  "Content-Encoding": "gzip"})
    assert broken.status_code == 400 and "not valid gzip" in broken.text


# ---- atroposlib's own client code against the server under uvicorn ----------------------


def test_atroposlib_env_and_trainer_run_against_it(serving):
    """BaseEnv's HTTP methods and the example trainer's helpers, unchanged, on a real socket."""
    from atroposlib.cli.dpo import check_for_batch
    from atroposlib.envs.base import BaseEnv, BaseEnvConfig
    from atroposlib.envs.server_handling.server_baseline import ServerBaseline
    from example_trainer.api import get_batch, register_trainer
    from example_trainer.config import TrainingConfig

    from preftune.models.tiny import tiny_path

    class Env(BaseEnv):  # the two abstract methods are never reached by the HTTP path
        async def get_next_item(self) -> Any:
            raise AssertionError("not used")

        async def evaluate(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("not used")

    def env(url: str, name: str) -> Env:
        config = BaseEnvConfig(tokenizer_name=str(tiny_path()), rollout_server_url=url,
                               wandb_name=name, use_wandb=False, group_size=4,
                               inference_weight=2.0 if name == "math" else 1.0)
        return Env(config, ServerBaseline(), testing=True)

    def scored(tag: int) -> dict:
        # 60 tokens per sequence makes the body larger than 1 KiB, so BaseEnv gzips it.
        tokens = [[tag, *range(10, 69)] for _ in range(4)]
        return {"tokens": tokens, "masks": [[-100] * 10 + t[10:] for t in tokens],
                "scores": [1.0, 0.0, 0.5, -1.0], "inference_logprobs": [[1.0] * 60] * 4}

    async def environments(url: str) -> list[Env]:
        envs = [env(url, "math"), env(url, "code")]
        for e in envs:
            await e.register_env()
            await e.get_server_info()
        assert [e.env_id for e in envs] == [0, 1]
        assert [e.wandb_prepend for e in envs] == ["math_0", "code_0"]
        assert envs[0].config.batch_size == 8 and envs[0].max_token_len == 128
        await envs[0].handle_send_to_api([scored(1), scored(2), scored(3)])  # scored_data_list
        await envs[1].handle_send_to_api(scored(4))  # scored_data, one group
        await envs[1].get_status()
        return envs

    with serving(create_app()) as url:
        register_trainer(TrainingConfig(model_name="tiny", atropos_url=url, batch_size=2,
                                        gradient_accumulation_steps=4, seq_len=128,
                                        training_steps=7, save_path="/tmp/run"))
        assert get_batch(url) == {"batch": None}  # the first poll lets environments in
        envs = asyncio.run(environments(url))
        assert envs[1].status_dict["queue_size"] == 4 and envs[1].status_dict[
            "self_queue_size"] == 1
        assert envs[1].status_dict["env_weight"] == pytest.approx(1 / 3)

        first = get_batch(url)["batch"]  # weights 2:1 → two math groups, then one code
        second = asyncio.run(check_for_batch(url))
        assert [(g["env_id"], g["tokens"][0][0]) for g in first] == [(0, 1), (1, 4)]
        assert [(g["env_id"], g["tokens"][0][0]) for g in second] == [(0, 2), (0, 3)]
        assert first[0]["inference_logprobs"] == [[1.0] * 60] * 4
        assert first[0]["masks"] == scored(1)["masks"]
        assert get_batch(url) == {"batch": None}
