"""An OpenAI-compatible inference server for local online-RL runs: batching and hot reload.

    app = create_app("tiny", weights_dir=Path("experiments/grpo/weights"))
    serve("experiments/my-run", port=9001)                  # uvicorn; a run serves its final/

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health``. Bodies and answers have OpenAI's shapes; each choice also carries
``token_ids``, the sampled ids (EOS included when generation stopped on it), because a trainer
needs ids, not text it would have to tokenize again. Errors have OpenAI's error body.

Log-probs. ``token_logprobs`` (completions) and ``logprobs.content[].logprob`` (chat) are the
log-probabilities of the sampled tokens under the model's *raw* distribution: a log-softmax of
the logits at temperature 1, before temperature, top-p or any other warping, the same default
as vLLM. Trainers use them as ``old_logps`` in the importance ratio, which compares the
policy's log-prob of a token with the same quantity after an update; the sampling
distribution (tempered, truncated) is not the policy. They come from ``generate``'s
``output_logits`` and equal a separate forward pass over prompt + completion up to float
error. Only the sampled token's log-prob is returned: ``top_logprobs`` is ``null``
(completions) or ``[]`` (chat), whatever count the request asks for.

Batching. One worker thread owns the model. Requests arriving within ``batch_wait_s`` of the
first one waiting (up to ``max_batch`` sequences) are generated together, left-padded, one
``generate`` call per sampling setting (temperature, top_p) and ``max_batch`` rows; a request
asking for fewer tokens than its batch-mates is cut to its own ``max_tokens``. A request with a
``seed`` is generated in a call of its own after ``torch.manual_seed(seed)``, because the
random draws of a row depend on the rows beside it: the same seeded request then gives the same
tokens. Temperature 0 is greedy. Sampling uses only the request's settings, never defaults from
the model's ``generation_config`` (no top-k, no repetition penalty).

Hot reload. A trainer publishes weights with ``publish_weights`` into ``weights_dir``:
directories ``step-N`` (full weights or a LoRA adapter) and a file ``latest`` naming the newest
complete one. Before each batch the worker stats ``latest`` and, when it changed, loads that
directory into the running model: an adapter replaces the previous adapter over the base
weights; full weights are copied into the model's parameters. Each answer's
``x-preftune-weights`` header names the weights that generated it (``initial`` before any
reload), and so does ``GET /v1/models``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException

from preftune.errors import MissingError, PreftuneError, UsageError
from preftune.fsutil import atomic_dir, write_text
from preftune.models.load import load_tokenizer
from preftune.models.locate import load_located, locate

log = logging.getLogger(__name__)

WEIGHTS_HEADER = "x-preftune-weights"
INITIAL_WEIGHTS = "initial"


# ---- publishing weights (the trainer's side) ---------------------------------------------


def publish_weights(model: Any, weights_dir: str | os.PathLike[str], step: int,
                    keep: int = 2, state_dict: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as ``weights_dir/step-N`` and point ``latest`` at it; keep ``keep`` steps.

    A PEFT model saves only its adapter; ``state_dict`` gives the weights where ``model``
    does not hold them whole (FSDP shards, gathered by the trainer). The directory is written
    under a temporary name, synced and renamed (``fsutil.atomic_dir``) before ``latest`` is
    replaced atomically, so a server never sees a half-written step. Older steps beyond the
    newest ``keep`` are deleted; keeping more than one gives a server still loading the
    previous step time to finish.
    """
    if keep < 1:
        raise UsageError(f"publish_weights keeps at least 1 step; got keep={keep}")
    root = Path(weights_dir)
    name = f"step-{step}"
    with atomic_dir(root / name) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
    write_text(root / "latest", name + "\n")
    published = sorted((int(p.name.removeprefix("step-")), p) for p in root.glob("step-*")
                       if p.is_dir() and p.name.removeprefix("step-").isdigit())
    older = [p for _, p in published if p.name != name]
    for path in older[:max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(path, ignore_errors=True)
    return root / name


class WeightsWatcher:
    """Tells when ``weights_dir/latest`` changed; a stat per call, a read only on change."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir
        self._seen: tuple[int, int, int] | None = None

    def changed(self) -> Path | None:
        """The step directory ``latest`` names, when it differs from the last call's."""
        try:
            stat = (self.weights_dir / "latest").stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if key == self._seen:
                return None
            self._seen = key
            name = (self.weights_dir / "latest").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not name or "/" in name or name.startswith("."):
            log.warning("%s/latest names %r, not a step directory; ignored",
                        self.weights_dir, name)
            return None
        return self.weights_dir / name


# ---- the policy: one model, its tokenizer, generation and reloading ---------------------


@dataclass(frozen=True)
class Sampling:
    temperature: float  # 0: greedy
    top_p: float
    max_tokens: int
    seed: int | None = None


@dataclass
class Sample:
    token_ids: list[int]
    logprobs: list[float]  # raw-model log-prob of each sampled token
    finish_reason: Literal["stop", "length"]


class Policy:
    """The served model. Only the worker thread calls ``generate`` and ``load``."""

    def __init__(self, source: str) -> None:
        located = locate(source)
        self.name = source
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(located.tokenizer_dir)
        # An adapter stays unmerged: published adapters replace it over the same base weights.
        self.model = load_located(located).to(self.device).eval()
        self.weights = INITIAL_WEIGHTS
        self._adapters = 0
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings",
                                                 None)

    def generate(self, prompts: list[list[int]], sampling: Sampling,
                 limits: list[int]) -> list[Sample]:
        """One ``generate`` call over ``prompts`` (left-padded): a sample per prompt, each cut
        to its own limit of new tokens (``sampling.max_tokens`` is the largest)."""
        pad_id = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt):] = torch.tensor(prompt)
            attention_mask[i, width - len(prompt):] = 1
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        mode: dict[str, Any] = (
            {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
             "top_k": 0}
            if sampling.temperature > 0 else {"do_sample": False})
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                max_new_tokens=sampling.max_tokens, pad_token_id=pad_id,
                eos_token_id=sorted(self.eos_ids), repetition_penalty=1.0,
                return_dict_in_generate=True, output_logits=True, **mode)
        new_ids = out.sequences[:, width:]                                     # (B, T)
        # output_logits are the raw logits, before temperature and top-p warp them.
        logps = torch.stack(out.logits, dim=1).float().log_softmax(-1)          # (B, T, V)
        token_logps = logps.gather(-1, new_ids.unsqueeze(-1)).squeeze(-1)      # (B, T)
        return [self._cut(ids, row_logps, limit) for ids, row_logps, limit
                in zip(new_ids.tolist(), token_logps.tolist(), limits, strict=True)]

    def _cut(self, ids: list[int], logps: list[float], max_tokens: int) -> Sample:
        """A row up to its first EOS (kept) or ``max_tokens``; later positions are padding."""
        for k, token in enumerate(ids[:max_tokens]):
            if token in self.eos_ids:
                return Sample(ids[:k + 1], logps[:k + 1], "stop")
        return Sample(ids[:max_tokens], logps[:max_tokens], "length")

    def load(self, step_dir: Path) -> None:
        """Load published weights into the running model (adapter or full weights)."""
        if (step_dir / "adapter_config.json").exists():
            self._load_adapter(step_dir)
        else:
            self._load_full(step_dir)
        self.weights = step_dir.name

    def _load_adapter(self, step_dir: Path) -> None:
        from peft import PeftModel

        self._adapters += 1
        name = f"published-{self._adapters}"
        if isinstance(self.model, PeftModel):
            old = self.model.active_adapter
            self.model.load_adapter(str(step_dir), adapter_name=name,
                                    torch_device=str(self.device))
            self.model.set_adapter(name)
            self.model.delete_adapter(old)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(step_dir),
                                                   adapter_name=name).to(self.device)
        self.model.eval()

    def _load_full(self, step_dir: Path) -> None:
        from peft import PeftModel
        from safetensors import safe_open
        from safetensors.torch import load_file

        files = sorted(step_dir.glob("*.safetensors"))
        if not files:
            raise MissingError(f"{step_dir} holds neither adapter_config.json nor *.safetensors",
                               ["publish weights with preftune.rl.inference.publish_weights"])
        base = self.model.unload() if isinstance(self.model, PeftModel) else self.model
        # Check every name and shape before copying any, so a bad step leaves the model whole.
        shapes = {name: tuple(t.shape) for name, t in base.state_dict().items()}
        for path in files:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    shape = tuple(f.get_slice(key).get_shape())
                    if shapes.get(key) != shape:
                        raise UsageError(
                            f"{path} does not fit the served model: tensor {key} has shape "
                            f"{shape}, the model {shapes.get(key, 'has no such tensor')}",
                            [f"publish weights of the model this server serves ({self.name})"])
        for path in files:
            base.load_state_dict(load_file(str(path), device=str(self.device)), strict=False)
        self.model = base.eval()


# ---- the worker: batches of requests, one model ------------------------------------------


@dataclass
class Answer:
    samples: list[Sample]  # prompt-major: prompt i's j-th sample is at i * n + j
    weights: str


@dataclass
class Job:
    prompts: list[list[int]]
    n: int
    sampling: Sampling
    future: Future[Answer] = field(default_factory=Future)

    @property
    def rows(self) -> list[list[int]]:
        return [p for p in self.prompts for _ in range(self.n)]


@dataclass
class _Row:
    job: Job
    slot: int  # the row's place in its job's answer
    prompt: list[int]


class Engine:
    """The worker thread that owns ``policy``: gathers jobs into batches, reloads weights."""

    def __init__(self, policy: Policy, watcher: WeightsWatcher | None, max_batch: int,
                 batch_wait_s: float, seed: int | None) -> None:
        self.policy, self.watcher = policy, watcher
        self.max_batch, self.batch_wait_s, self.seed = max_batch, batch_wait_s, seed
        self.generate_calls = 0  # for tests and monitoring
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="preftune-inference", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self.thread.join(timeout=60)

    def submit(self, job: Job) -> Future[Answer]:
        self._queue.put(job)
        return job.future

    def _run(self) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)
        while (jobs := self._gather()) is not None:
            self._reload()
            self._serve(jobs)

    def _gather(self) -> list[Job] | None:
        """The first waiting job and those arriving within ``batch_wait_s``; None: stop."""
        first = self._queue.get()
        if first is None:
            return None
        jobs, rows = [first], len(first.rows)
        deadline = time.monotonic() + self.batch_wait_s
        while rows < self.max_batch and (left := deadline - time.monotonic()) > 0:
            try:
                job = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # serve what was gathered, then stop
                break
            jobs.append(job)
            rows += len(job.rows)
        return jobs

    def _reload(self) -> None:
        step_dir = self.watcher.changed() if self.watcher is not None else None
        if step_dir is None:
            return
        try:
            self.policy.load(step_dir)
            log.info("serving weights %s", step_dir)
        except (OSError, RuntimeError, ValueError, PreftuneError) as e:
            # A step deleted mid-load, or a bad one: keep serving the weights already loaded.
            log.warning("cannot load weights %s, still serving %s: %s", step_dir,
                        self.policy.weights, e)

    def _serve(self, jobs: list[Job]) -> None:
        results: dict[int, list[Sample | None]] = {id(j): [None] * len(j.rows) for j in jobs}
        for sampling, rows in _groups(jobs):
            try:
                for start in range(0, len(rows), self.max_batch):
                    chunk = rows[start:start + self.max_batch]
                    self.generate_calls += 1
                    samples = self.policy.generate(
                        [r.prompt for r in chunk], sampling,
                        [r.job.sampling.max_tokens for r in chunk])
                    for row, sample in zip(chunk, samples, strict=True):
                        results[id(row.job)][row.slot] = sample
            except Exception as e:  # the requests waiting on these rows answer with it
                for row in rows:
                    if not row.job.future.done():
                        row.job.future.set_exception(e)
        for job in jobs:
            done = [s for s in results[id(job)] if s is not None]
            if not job.future.done() and len(done) == len(job.rows):
                job.future.set_result(Answer(done, self.policy.weights))


def _groups(jobs: list[Job]) -> list[tuple[Sampling, list[_Row]]]:
    """Rows by the ``generate`` call they can share: one per (temperature, top_p), a call of
    its own for each seeded job. A group generates its rows' largest ``max_tokens``."""
    groups: dict[Any, list[_Row]] = defaultdict(list)
    for job in jobs:
        s = job.sampling
        key: Any = ("seeded", id(job)) if s.seed is not None else (
            (0.0, 1.0) if s.temperature == 0 else (s.temperature, s.top_p))
        groups[key].extend(_Row(job, slot, prompt) for slot, prompt in enumerate(job.rows))
    out = []
    for rows in groups.values():
        s = rows[0].job.sampling
        longest = max(r.job.sampling.max_tokens for r in rows)
        out.append((Sampling(s.temperature, s.top_p, longest, s.seed), rows))
    return out


# ---- request schemas ----------------------------------------------------------------------


class _SamplingFields(BaseModel):
    model: str | None = None  # accepted for OpenAI clients; the server serves one model
    n: int = Field(default=1, ge=1)
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=16, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    return_token_ids: bool | None = None  # vLLM's switch for token_ids; always sent here

    @field_validator("stream")
    @classmethod
    def _no_streaming(cls, stream: bool) -> bool:
        if stream:
            raise ValueError("streaming is not supported; send stream: false")
        return stream

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if stop is not None and any(not s for s in ([stop] if isinstance(stop, str) else stop)):
            raise ValueError("stop strings must be non-empty")
        return stop

    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_tokens, self.seed)

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions``: text prompts, or token-id prompts used as they are."""

    prompt: str | list[str] | list[int] | list[list[int]]
    # OpenAI's count of top alternatives; any value returns the sampled tokens' log-probs only.
    logprobs: int | None = Field(default=None, ge=0)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and (not prompt or any(
                isinstance(p, list) and not p for p in prompt)):
            raise ValueError("prompt must hold at least one prompt, each non-empty")
        return prompt


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(_SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0)  # accepted; alternatives not returned


# ---- turning samples into answers ---------------------------------------------------------


@dataclass
class Decoded:
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    offsets: list[int]  # where each token's text starts in ``text``


def decode(tokenizer: Any, sample: Sample, stops: list[str]) -> Decoded:
    """The sample's text, cut before the first stop string (tokens kept up to the one that
    completes it, as vLLM does); special tokens are left out of the text."""
    ids = sample.token_ids
    prefixes = tokenizer.batch_decode([ids[:k] for k in range(len(ids) + 1)],
                                      skip_special_tokens=True)
    text = prefixes[-1]
    offsets = [min(len(p), len(text)) for p in prefixes[:-1]]
    hits = [(text.find(s), s) for s in stops if s in text]
    if not hits:
        return Decoded(text, ids, sample.logprobs, sample.finish_reason, offsets)
    start, stop = min(hits)
    end = next(k for k in range(1, len(ids) + 1) if len(prefixes[k]) >= start + len(stop))
    return Decoded(text[:start], ids[:end], sample.logprobs[:end], "stop", offsets[:end])


def _token_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


def _usage(prompts: list[list[int]], choices: list[Decoded]) -> dict[str, int]:
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(len(c.token_ids) for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(tokenizer: Any, model: str, prompts: list[list[int]],
                    choices: list[Decoded], logprobs: bool) -> dict[str, Any]:
    out = []
    for index, c in enumerate(choices):
        lp = {"tokens": _token_texts(tokenizer, c.token_ids), "token_logprobs": c.logprobs,
              "text_offset": c.offsets, "top_logprobs": None} if logprobs else None
        out.append({"index": index, "text": c.text, "finish_reason": c.finish_reason,
                    "logprobs": lp, "token_ids": c.token_ids})
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": model, "choices": out,
            "usage": _usage(prompts, choices)}


def chat_body(tokenizer: Any, model: str, prompt: list[int], choices: list[Decoded],
              logprobs: bool) -> dict[str, Any]:
    out = []
    for index, c in enumerate(choices):
        content = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8")),
                    "top_logprobs": []}
                   for t, lp in zip(_token_texts(tokenizer, c.token_ids), c.logprobs,
                                    strict=True)]
        out.append({"index": index, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                    "logprobs": {"content": content} if logprobs else None,
                    "token_ids": c.token_ids})
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": model, "choices": out,
            "usage": _usage([prompt], choices)}


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt ids of a conversation: the tokenizer's chat template with the generation
    prompt; without a template, ``role: content`` lines then ``assistant: `` (as ``Sampler``),
    with the tokenizer's special tokens (BOS) added."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    return list(tokenizer(text)["input_ids"])


# ---- the app ------------------------------------------------------------------------------


def _error(status: int, message: str, param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"
                                   if status < 500 else "server_error",
                                   "param": param, "code": code}}, status_code=status)


class _BadRequest(Exception):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = list(e.errors())
        where = [".".join(str(p) for p in problem["loc"][1:]) for problem in problems]
        lines = [f"{w or 'body'}: {str(p['msg']).removeprefix('Value error, ')}"
                 for w, p in zip(where, problems, strict=True)]
        # A field that is a union reports one problem per member; name the field once.
        param = where[0].split(".")[0] if where and where[0] else None
        return _error(400, "invalid request: " + "; ".join(dict.fromkeys(lines)), param,
                      "invalid_value")

    @app.exception_handler(_BadRequest)
    async def bad(_: Request, e: _BadRequest) -> JSONResponse:
        return _error(400, e.message, e.param, "invalid_value")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def crashed(_: Request, e: Exception) -> JSONResponse:
        log.exception("inference failed", exc_info=e)
        return _error(500, f"generation failed ({type(e).__name__}: {e}); the server log has "
                      "the traceback")


def create_app(model: str, *, weights_dir: Path | None = None, max_batch: int = 16,
               batch_wait_s: float = 0.01, seed: int | None = None) -> FastAPI:
    """The inference app for ``model`` (a name ``--model`` takes, or a run directory: its
    final model). The model loads here; the worker thread runs while the app is served."""
    if max_batch < 1 or batch_wait_s < 0:
        raise UsageError(f"bad batching settings: max_batch={max_batch}, "
                         f"batch_wait_s={batch_wait_s}", ["max_batch >= 1, batch_wait_s >= 0"])
    policy = Policy(model)
    watcher = WeightsWatcher(Path(weights_dir)) if weights_dir is not None else None
    engine = Engine(policy, watcher, max_batch, batch_wait_s, seed)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    app = FastAPI(title="preftune inference", lifespan=lifespan)
    app.state.engine = engine
    _handle_errors(app)
    tokenizer = policy.tokenizer

    async def run(prompts: list[list[int]], body: _SamplingFields, response: Response
                  ) -> list[Decoded]:
        longest = max(len(p) for p in prompts) + body.max_tokens
        if policy.max_positions is not None and longest > policy.max_positions:
            raise _BadRequest(f"prompt ({longest - body.max_tokens} tokens) + max_tokens "
                              f"({body.max_tokens}) exceeds the model's "
                              f"{policy.max_positions} positions", "max_tokens")
        answer = await asyncio.wrap_future(engine.submit(Job(prompts, body.n, body.sampling())))
        response.headers[WEIGHTS_HEADER] = answer.weights
        return [decode(tokenizer, s, body.stops()) for s in answer.samples]

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, response: Response) -> dict[str, Any]:
        prompts = _prompt_ids(tokenizer, body.prompt)
        choices = await run(prompts, body, response)
        return completion_body(tokenizer, model, prompts, choices, body.logprobs is not None)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, response: Response) -> dict[str, Any]:
        prompt = render_chat(tokenizer, [m.model_dump() for m in body.messages])
        choices = await run([prompt], body, response)
        return chat_body(tokenizer, model, prompt, choices, body.logprobs)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                            "owned_by": "preftune",
                                            "weights": policy.weights}]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok" if engine.thread.is_alive() else "stopped",
                "weights": policy.weights}

    return app


def _prompt_ids(tokenizer: Any, prompt: str | list[str] | list[int] | list[list[int]]
                ) -> list[list[int]]:
    """Token ids of each prompt: text gets the tokenizer's special tokens (BOS), as vLLM
    does; token-id prompts are used as they are."""
    prompts: list[Any] = [prompt] if isinstance(prompt, str) or all(
        isinstance(p, int) for p in prompt) else list(prompt)
    vocab = len(tokenizer)
    out: list[list[int]] = []
    for p in prompts:
        ids = list(tokenizer(p)["input_ids"]) if isinstance(p, str) else [int(i) for i in p]
        if not ids or any(not 0 <= i < vocab for i in ids):
            raise _BadRequest(f"prompt {len(out)} is empty or holds a token id outside the "
                              f"vocabulary (0..{vocab - 1})", "prompt")
        out.append(ids)
    return out


def serve(model: str, host: str = "127.0.0.1", port: int = 9001, *,
          weights_dir: Path | None = None, max_batch: int = 16, batch_wait_s: float = 0.01,
          seed: int | None = None) -> None:
    """Serve ``create_app(model, ...)`` with uvicorn until interrupted."""
    import uvicorn

    app = create_app(model, weights_dir=weights_dir, max_batch=max_batch,
                     batch_wait_s=batch_wait_s, seed=seed)
    uvicorn.run(app, host=host, port=port, log_level="info")
