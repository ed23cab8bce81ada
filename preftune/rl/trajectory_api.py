"""The trajectory API: environments push scored groups, a trainer pulls batches of them.

Wire-compatible with the Atropos trajectory API of atroposlib 0.4, so an Atropos environment
(``BaseEnv``) or trainer runs against preftune unchanged: same paths, field names and response
shapes, gzip-compressed request bodies accepted (atroposlib compresses bodies of 1 KiB or more).
State lives in memory in this one process: the server is a local rendezvous between
environments and one trainer, and ``GET /reset_data`` forgets everything.

Where preftune deliberately differs from atroposlib 0.4:

* Batches are formed fairly by environment weight (see ``TrajectoryStore.next_batch``);
  atroposlib batches first-in first-out and leaves weighting to the environments' own
  throttling. ``/status-env`` still returns atroposlib's ``env_weight`` for that throttling.
* One batch is formed per ``GET /batch`` and ``current_step`` counts batches served;
  atroposlib forms every batch it can at once and counts them all as steps immediately.
* Every submission is queued as one whole group whatever its size; atroposlib holds back a
  group whose size differs from the environment's ``group_size`` until several add up to it.
* Payloads are checked: tokens, masks, scores and the per-sequence optional fields must agree
  on the number of sequences, each mask must match its token sequence, a group must be
  non-empty and no larger than the batch size, and ``env_id`` must be registered. Each failure
  is a 422 whose ``loc`` names the field. An unknown ``env_id`` on ``/status-env`` is a 404.
"""

from __future__ import annotations

import gzip
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# atroposlib's floor on the weight it reports to an environment, so none is starved; batch
# fairness uses the same floor so that a weight of 0 or -1 ("ignore") still gets served.
MIN_ENV_WEIGHT = 0.01


# ---- request schemas --------------------------------------------------------------------


class Registration(BaseModel):
    """What a trainer sends to ``POST /register``."""

    # Atroposlib requires these two; preftune's trainer has no W&B run, so they default to "".
    wandb_group: str = ""
    wandb_project: str = ""
    batch_size: int = Field(gt=0, description="sequences per batch")
    max_token_len: int
    checkpoint_dir: str
    save_checkpoint_interval: int
    starting_step: int = Field(ge=0)
    num_steps: int


class RegisterEnv(BaseModel):
    """What an environment sends to ``POST /register-env``."""

    max_token_length: int
    # BaseEnv sends its config's wandb_name here, which may be None.
    desired_name: str | None = None
    weight: float
    group_size: int = Field(gt=0)
    min_batch_allocation: float | None = Field(default=None, ge=0.0, le=1.0)


class EnvIdentifier(BaseModel):
    """An environment's id, as ``POST /disconnect-env`` and ``GET /status-env`` take it."""

    env_id: int


_PER_SEQUENCE = ("masks", "scores", "advantages", "ref_logprobs", "inference_logprobs",
                 "messages", "overrides", "distill_token_ids", "distill_logprobs")


class ScoredData(BaseModel):
    """One group of scored sequences from an environment: the unit that is never split.

    ``masks`` holds -100 at prompt positions and the token id elsewhere; ``inference_logprobs``
    holds 1.0 at masked positions (atroposlib's conventions, passed through untouched).
    """

    tokens: list[list[int]] = Field(min_length=1)
    masks: list[list[int]]
    scores: list[float]
    advantages: list[list[float]] | None = None
    ref_logprobs: list[list[float]] | None = None
    messages: list[list[dict[str, Any]]] | None = None
    generation_params: dict[str, Any] | None = None
    inference_logprobs: list[list[float]] | None = None
    overrides: list[dict[str, Any]] | None = None
    group_overrides: dict[str, Any] | None = None
    images: Any | None = None
    env_id: int | None = None
    distill_token_ids: list[list[list[int]]] | None = None  # [sequence][position][top_k]
    distill_logprobs: list[list[list[float]]] | None = None  # [sequence][position][top_k]

    @field_validator(*_PER_SEQUENCE)
    @classmethod
    def _one_per_sequence(cls, value: list[Any] | None, info: ValidationInfo) -> Any:
        tokens = info.data.get("tokens")
        if value is None or tokens is None:  # tokens is absent when it failed validation
            return value
        if len(value) != len(tokens):
            raise PydanticCustomError(
                "sequence_count",
                "{field} has {got} entries but tokens has {want} sequences; "
                "send one entry per sequence",
                {"field": info.field_name, "got": len(value), "want": len(tokens)})
        return value

    @field_validator("masks")
    @classmethod
    def _masks_match_tokens(cls, masks: list[list[int]], info: ValidationInfo) -> Any:
        for i, (mask, seq) in enumerate(zip(masks, info.data.get("tokens") or [], strict=False)):
            if len(mask) != len(seq):
                raise PydanticCustomError(
                    "mask_length",
                    "masks[{i}] has {got} positions but tokens[{i}] has {want}; a mask holds "
                    "-100 for each prompt token and the token id for each trained token",
                    {"i": i, "got": len(mask), "want": len(seq)})
        return masks

    @field_validator("messages")
    @classmethod
    def _messages_have_role_and_content(cls, messages: Any) -> Any:
        for i, conversation in enumerate(messages or []):
            for j, message in enumerate(conversation):
                if "role" not in message or "content" not in message:
                    raise PydanticCustomError(
                        "message_fields",
                        "messages[{i}][{j}] needs both 'role' and 'content'", {"i": i, "j": j})
        return messages


# ---- response schemas -------------------------------------------------------------------


class Registered(BaseModel):
    uuid: int


class EnvRegistered(BaseModel):
    status: Literal["success"] = "success"
    env_id: int
    wandb_name: str
    checkpoint_dir: str
    starting_step: int
    checkpoint_interval: int
    num_steps: int


class EnvMustWait(BaseModel):
    """Answer to ``/register-env`` before the trainer's first ``GET /batch`` (atroposlib's rule)."""

    status: Literal["wait for trainer to start"] = "wait for trainer to start"


class Disconnected(BaseModel):
    status: Literal["success", "failure"]
    error: str | None = None


class Received(BaseModel):
    status: Literal["received"] = "received"


class ReceivedList(BaseModel):
    status: Literal["received"] = "received"
    groups_processed: int


class Batch(BaseModel):
    """A batch of whole groups (``batch_size`` sequences in all), or None while too few wait."""

    batch: list[ScoredData] | None


class NotRegistered(BaseModel):
    status: Literal["error"] = "error"
    message: str = "Trainer not registered. Call /register first."
    batch: list[ScoredData] = []


class Status(BaseModel):
    current_step: int
    queue_size: int = Field(description="groups waiting to be batched")


class EnvStatus(BaseModel):
    current_step: int
    queue_size: int = Field(description="sequences waiting, in units of this env's group_size")
    unallocated_fraction: float
    self_queue_size: int = Field(description="this env's own waiting sequences, same units")
    max_group_size: int
    env_weight: float


class Info(BaseModel):
    batch_size: int = -1
    max_token_len: int = -1


class WandbInfo(BaseModel):
    group: str | None = None
    project: str | None = None


# ---- state ------------------------------------------------------------------------------


@dataclass
class _Source:
    """The queue of one environment (or of data sent without a registered env_id)."""

    weight: float
    queue: deque[ScoredData] = field(default_factory=deque)
    # Virtual time of weighted fair queueing: sequences batched so far divided by weight.
    vtime: float = 0.0

    def first_fitting(self, room: int, skip: set[int]) -> int | None:
        """Index of the oldest queued group that fits ``room`` sequences, or None."""
        for i, group in enumerate(self.queue):
            if i not in skip and len(group.tokens) <= room:
                return i
        return None


@dataclass
class _Env:
    registration: RegisterEnv
    wandb_name: str
    source: _Source
    connected: bool = True
    last_update: float = field(default_factory=time.time)


class TrajectoryStore:
    """Registrations, queued groups and the step counter of one API process.

    Every method runs to completion without awaiting, so the async handlers that call them are
    serialised by the event loop and need no lock.
    """

    def __init__(self) -> None:
        self.trainer: Registration | None = None
        self.requesters: list[int] = []
        self.started = False  # set by the trainer's first GET /batch
        self.step = 0
        self.envs: list[_Env] = []
        self.unregistered = _Source(weight=1.0)  # groups sent with env_id None
        self.latest: ScoredData | None = None
        self._vclock = 0.0  # virtual time of the last group batched

    def register_trainer(self, registration: Registration) -> int:
        """Record the run on the first call; later calls (other trainer ranks) only get a uuid."""
        if self.trainer is None:
            self.trainer = registration
            self.step = registration.starting_step
        self.requesters.append(uuid.uuid4().int)
        return self.requesters[-1]

    def register_env(self, request: RegisterEnv) -> _Env:
        name = request.desired_name or "env"
        same_name = sum(1 for e in self.envs if (e.registration.desired_name or "env") == name)
        env = _Env(request, f"{name}_{same_name}", _Source(max(request.weight, MIN_ENV_WEIGHT)))
        self.envs.append(env)
        return env

    def env(self, env_id: int) -> _Env | None:
        return self.envs[env_id] if 0 <= env_id < len(self.envs) else None

    def sources(self) -> list[_Source]:
        """Every queue, in a fixed order (registration order, unregistered last) for ties."""
        return [e.source for e in self.envs] + [self.unregistered]

    def add(self, group: ScoredData) -> None:
        source = self.unregistered if group.env_id is None else self.envs[group.env_id].source
        if not source.queue:
            # A queue that ran dry does not bank the turns it missed (start time = max of its
            # own finish and the current virtual time, as in weighted fair queueing).
            source.vtime = max(source.vtime, self._vclock)
        source.queue.append(group)
        self.latest = group
        if group.env_id is not None:
            self.envs[group.env_id].last_update = time.time()

    def queued_groups(self) -> int:
        return sum(len(s.queue) for s in self.sources())

    def next_batch(self) -> list[ScoredData] | None:
        """Take whole groups making exactly ``batch_size`` sequences, or None and take nothing.

        First each connected env with a ``min_batch_allocation`` gets its oldest groups up to
        ``int(batch_size * min_batch_allocation)`` sequences (scaled down when the minimums sum
        past the batch); if one cannot reach its minimum there is no batch yet (atroposlib's
        rule). Then the rest is filled group by group from the queue with the lowest virtual
        time (sequences batched / weight), taking its oldest group that still fits; each taken
        group advances that queue's virtual time by size / weight. Over many batches each
        env's share of sequences approaches its share of the weights, and a queue that has
        nothing waiting is skipped instead of stalling the others.

        Groups are never split. When the groups that fit cannot make exactly ``batch_size``
        (e.g. group sizes 4 and a batch of 10) there is no batch: keep every group size a
        divisor of the batch size, as atroposlib also assumes (powers of two).
        """
        assert self.trainer is not None
        room = self.trainer.batch_size
        sources = self.sources()
        vtimes = [s.vtime for s in sources]
        taken: list[set[int]] = [set() for _ in sources]
        order: list[tuple[int, int]] = []  # (source index, queue index) in batch order
        clock = self._vclock

        def take(k: int, i: int) -> None:
            nonlocal room, clock
            size = len(sources[k].queue[i].tokens)
            clock = vtimes[k]
            vtimes[k] += size / sources[k].weight
            taken[k].add(i)
            order.append((k, i))
            room -= size

        for k, need in self._minimums():
            got = 0
            while got < need and (i := sources[k].first_fitting(room, taken[k])) is not None:
                got += len(sources[k].queue[i].tokens)
                take(k, i)
            if got < need:
                return None
        while room > 0:
            candidates = [(vtimes[k], k, i) for k, s in enumerate(sources)
                          if (i := s.first_fitting(room, taken[k])) is not None]
            if not candidates:
                return None
            _, k, i = min(candidates)
            take(k, i)

        batch = [sources[k].queue[i] for k, i in order]
        for k, source in enumerate(sources):
            source.queue = deque(g for i, g in enumerate(source.queue) if i not in taken[k])
            source.vtime = vtimes[k]
        self._vclock = clock
        self.step += 1
        return batch

    def _minimums(self) -> list[tuple[int, int]]:
        """(source index, sequences) each connected env with a minimum allocation is owed."""
        assert self.trainer is not None
        batch_size = self.trainer.batch_size
        owed = [(k, int(batch_size * e.registration.min_batch_allocation))
                for k, e in enumerate(self.envs)
                if e.connected and e.registration.min_batch_allocation is not None]
        total = sum(n for _, n in owed)
        if total > batch_size:
            owed = [(k, n * batch_size // total) for k, n in owed]
        return [(k, n) for k, n in owed if n > 0]

    def env_status(self, env: _Env) -> EnvStatus:
        """What ``/status-env`` reports; ``env_weight`` is atroposlib's token-weighted share."""
        connected = [e for e in self.envs if e.connected]
        total = sum(e.registration.max_token_length * max(0.0, e.registration.weight)
                    for e in connected)
        share = (env.registration.max_token_length * env.registration.weight / total
                 if total > 0 else 1.0)
        allocated = sum(e.registration.min_batch_allocation or 0.0 for e in connected)
        groups = [g for s in self.sources() for g in s.queue]
        group_size = env.registration.group_size
        own = sum(len(g.tokens) for g in env.source.queue)
        return EnvStatus(
            current_step=self.step,
            queue_size=sum(len(g.tokens) for g in groups) // group_size,
            unallocated_fraction=1.0 - min(allocated, 1.0),
            self_queue_size=own // group_size,
            max_group_size=max((len(g.tokens) for g in groups), default=1),
            env_weight=max(MIN_ENV_WEIGHT, share),
        )


# ---- routes -----------------------------------------------------------------------------

router = APIRouter()


def _store(request: Request) -> TrajectoryStore:
    store: TrajectoryStore = request.app.state.trajectories
    return store


Store = Annotated[TrajectoryStore, Depends(_store)]


def _invalid(loc: list[str | int], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, so clients read it the same way."""
    return HTTPException(422, [{"loc": ["body", *loc], "msg": message, "type": "value_error"}])


def _check_group(store: TrajectoryStore, group: ScoredData, loc: list[str | int]) -> None:
    """Refuse what validation alone cannot see: an unknown env_id, a group that never fits."""
    if group.env_id is not None and store.env(group.env_id) is None:
        raise _invalid([*loc, "env_id"],
                       f"env_id {group.env_id} is not registered ({len(store.envs)} envs are); "
                       "register with POST /register-env and send the env_id it returns")
    if store.trainer is not None and len(group.tokens) > store.trainer.batch_size:
        raise _invalid([*loc, "tokens"],
                       f"tokens has {len(group.tokens)} sequences but a batch holds "
                       f"{store.trainer.batch_size} and groups are never split; send smaller "
                       "groups or register the trainer with a larger batch_size")


@router.get("/")
async def root() -> dict[str, str]:
    return {"message": "AtroposLib API"}


@router.post("/register")
async def register(body: Registration,
                   store: Store) -> Registered:
    return Registered(uuid=store.register_trainer(body))


@router.post("/register-env")
async def register_env(body: RegisterEnv, store: Store
                       ) -> EnvRegistered | EnvMustWait:
    if store.trainer is None or not store.started:
        return EnvMustWait()
    env = store.register_env(body)
    return EnvRegistered(env_id=len(store.envs) - 1, wandb_name=env.wandb_name,
                         checkpoint_dir=store.trainer.checkpoint_dir,
                         starting_step=store.step,
                         checkpoint_interval=store.trainer.save_checkpoint_interval,
                         num_steps=store.trainer.num_steps)


@router.post("/disconnect-env", response_model_exclude_none=True)
async def disconnect_env(body: EnvIdentifier,
                         store: Store) -> Disconnected:
    env = store.env(body.env_id)
    if env is None:
        return Disconnected(status="failure", error=f"env_id {body.env_id} is not registered")
    env.connected = False
    return Disconnected(status="success")


@router.post("/scored_data")
async def scored_data(body: ScoredData, store: Store) -> Received:
    _check_group(store, body, [])
    store.add(body)
    return Received()


@router.post("/scored_data_list")
async def scored_data_list(body: list[ScoredData],
                           store: Store) -> ReceivedList:
    for i, group in enumerate(body):  # all or nothing: check every group before queueing any
        _check_group(store, group, [i])
    for group in body:
        store.add(group)
    return ReceivedList(groups_processed=len(body))


@router.get("/batch")
async def batch(store: Store) -> Batch | NotRegistered:
    if store.trainer is None:
        return NotRegistered()
    store.started = True
    return Batch(batch=store.next_batch())


@router.get("/status")
async def status(store: Store) -> Status:
    return Status(current_step=store.step, queue_size=store.queued_groups())


@router.get("/status-env")
async def status_env(body: EnvIdentifier,
                     store: Store) -> EnvStatus:
    """The env's step, queue and weight; like atroposlib it takes a JSON body on a GET."""
    env = store.env(body.env_id)
    if env is None:
        raise HTTPException(404, f"env_id {body.env_id} is not registered "
                                 f"({len(store.envs)} envs are); register with POST /register-env")
    return store.env_status(env)


@router.get("/info")
async def info(store: Store) -> Info:
    if store.trainer is None:
        return Info()
    return Info(batch_size=store.trainer.batch_size, max_token_len=store.trainer.max_token_len)


@router.get("/wandb_info")
async def wandb_info(store: Store) -> WandbInfo:
    if store.trainer is None:
        return WandbInfo()
    return WandbInfo(group=store.trainer.wandb_group, project=store.trainer.wandb_project)


@router.get("/latest_example")
async def latest_example(store: Store) -> dict[str, Any]:
    """The last group received, or atroposlib's placeholder of empty lists before any."""
    if store.latest is None:
        return {key: [] for key in ("tokens", "masks", "scores", "advantages", "ref_logprobs",
                                    "generation_params", "inference_logprobs", "messages",
                                    "images")}
    return store.latest.model_dump()


@router.get("/reset_data")
async def reset_data(request: Request) -> PlainTextResponse:
    request.app.state.trajectories = TrajectoryStore()
    return PlainTextResponse("Reset successful")


# ---- app --------------------------------------------------------------------------------


class _GunzipRequests:
    """Inflate request bodies sent with ``Content-Encoding: gzip`` before FastAPI reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        encoding = dict(scope.get("headers", [])).get(b"content-encoding", b"")
        if scope["type"] != "http" or b"gzip" not in encoding.lower():
            await self.app(scope, receive, send)
            return
        compressed = bytearray()
        while True:
            message = await receive()
            compressed += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            body = gzip.decompress(bytes(compressed))
        except (OSError, EOFError):
            answer = PlainTextResponse("the body is marked Content-Encoding: gzip but is not "
                                       "valid gzip; send it compressed or drop the header", 400)
            await answer(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"]
                   if k not in (b"content-encoding", b"content-length")]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # after the body, pass on what the client sends next (a disconnect)
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


def create_app() -> FastAPI:
    """A fresh trajectory API with its own empty in-memory state."""
    app = FastAPI(title="preftune trajectory API (Atropos-compatible)")
    app.state.trajectories = TrajectoryStore()
    app.include_router(router)
    app.add_middleware(GZipMiddleware, minimum_size=1000)  # batches are large JSON
    app.add_middleware(_GunzipRequests)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API under uvicorn until interrupted (one process: the state is in memory)."""
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
