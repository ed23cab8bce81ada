"""A stand-in for the trajectory API that serves batches by step, for equality tests.

The real API (``preftune rl api``) forms batches from whatever environments sent, in the order
they sent it, so two runs never see the same batches. This one holds a fixed list: ``POST
/register`` sets the step training starts at (a resumed run's next step), and each ``GET
/batch`` answers that step's batch, then moves on. A run on one process, a run on two and a
run killed and resumed therefore train on the same batch at every step.

``scored_batches`` builds such a list on the tiny model: groups of four completions of one
prompt, with scores, and the inference engine's log-probs (the base model's own, nudged, so
that the ratio to the old policy moves off 1 and the clip acts).
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from fastapi import FastAPI


def create_standin(batches: list[list[dict[str, Any]]], delay_s: float = 0.0) -> FastAPI:
    """The app: ``batches[step]`` at each step; ``delay_s`` before each answer."""
    app = FastAPI()
    state: dict[str, Any] = {"step": 0, "registrations": []}
    app.state.standin = state

    @app.post("/register")
    async def register(body: dict[str, Any]) -> dict[str, str]:
        state["registrations"].append(body)
        state["step"] = int(body["starting_step"])
        return {"uuid": "standin"}

    @app.get("/batch")
    async def batch() -> dict[str, Any]:
        # The step is taken on arrival: a request from a run killed during the delay does not
        # move the step on after its resumption registered.
        step = state["step"]
        state["step"] += 1
        await asyncio.sleep(delay_s)
        return {"batch": batches[step % len(batches)]}

    return app


def scored_batches(steps: int, groups_per_batch: int = 2, seed: int = 0
                   ) -> list[list[dict[str, Any]]]:
    """``steps`` batches of ``groups_per_batch`` groups of four completions each."""
    from preftune.models.load import load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny")
    model = load_model("tiny", "fp32").eval()
    g = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    batches = []
    for _ in range(steps):
        groups = []
        for _ in range(groups_per_batch):
            prompt = torch.randint(5, vocab, (int(torch.randint(4, 9, (1,), generator=g)),),
                                   generator=g).tolist()
            tokens, masks, logprobs, scores = [], [], [], []
            for _ in range(4):
                n = int(torch.randint(3, 12, (1,), generator=g))
                completion = torch.randint(5, vocab, (n,), generator=g).tolist()
                ids = prompt + completion
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
                own = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])
                nudged = own.squeeze(1) + 0.3 * torch.randn(len(ids) - 1, generator=g)
                tokens.append(ids)
                masks.append([-100] * len(prompt) + completion)
                # Atropos' inference_logprobs: one per token, 1.0 on the prompt.
                logprobs.append([1.0] * len(prompt) + nudged[len(prompt) - 1:].tolist())
                scores.append(float(torch.rand(1, generator=g)))
            groups.append({"tokens": tokens, "masks": masks, "scores": scores,
                           "inference_logprobs": logprobs})
        batches.append(groups)
    return batches
