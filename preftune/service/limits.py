"""What the operator of ``preftune serve`` allows: server limits, tenant quotas, retention.

One ``ServiceConfig`` is read from a YAML file (``--config``) with flags over it, and handed to
the API, its validator and every worker. Give every process of one service the same file:
the API checks requests against it, workers enforce run time and running-job caps with it.

    limits:        # upper bounds on what any job may ask for (a 4xx names the limit)
      max_epochs: 20
      max_run_hours: 24
    quota:         # every tenant's quota unless ``tenants`` overrides it
      max_running_jobs: 2
      models: ["tiny", "Qwen/*"]
    tenants:
      team-a:
        max_running_jobs: 4
        integrations: {wandb: {env: {WANDB_API_KEY: "${TEAM_A_WANDB_KEY}"}}}
    retention: {files_days: 30, jobs_days: 90}
    graders:       # the grader endpoints (/v1/fine_tuning/alpha/graders/*) and RL jobs
      allow_python: false
      score_model_base_url: http://127.0.0.1:8001/v1
      score_model_api_key: "${JUDGE_API_KEY}"
      embedding_base_url: http://127.0.0.1:8002/v1   # text_similarity cosine
      embedding_model: BAAI/bge-small-en-v1.5
    metrics_token: "${PREFTUNE_METRICS_TOKEN}"

A value written ``${VAR}`` is read from the operator's environment when the file is loaded.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from preftune import settings
from preftune.errors import ConfigError
from preftune.graders import EmbeddingEndpoint, GraderSettings, ModelEndpoint

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Strict):
    """Upper bounds on what one job may ask for; each scales what the job costs."""

    max_epochs: int = Field(20, ge=1, description="Largest n_epochs a job may ask for.")
    max_steps: int = Field(100_000, ge=1, description="Most optimizer steps a job may plan "
                           "(max_steps, or epochs x pairs / (batch_size x grad_accum)).")
    max_batch_size: int = Field(256, ge=1, description="Largest batch_size (pairs per forward "
                                "pass).")
    max_grad_accum: int = Field(1024, ge=1, description="Largest grad_accum.")
    max_length: int = Field(8192, ge=8, description="Largest max_length, in tokens.")
    max_lora_rank: int = Field(256, ge=1, description="Largest lora_rank.")
    max_examples: int = Field(10_000_000, ge=1, description="Most examples a job may train "
                              "on: epochs x pairs in its training file (checked when the file "
                              "is validated).")
    max_tokens: int = Field(10**10, ge=1, description="Most tokens a job may plan: epochs x "
                            "pairs x max_length x 2 (checked when the file is validated).")
    max_run_hours: float = Field(24.0, gt=0, description="Longest time a job may run, over "
                                 "all its attempts; then it fails with max_run_time_exceeded.")
    max_attempts: int = Field(10, ge=1, description="Largest max_attempts a job may ask for.")
    validation_memory_mb: int = Field(2048, ge=64, description="Memory a file's validation "
                                      "may use (the private data memory of its child process, "
                                      "RLIMIT_DATA), in MiB.")
    validation_timeout_s: float = Field(300.0, gt=0, description="Seconds a file's "
                                        "validation may take.")


def plan_over_limits(checks: Sequence[tuple[str, int, str, str]], limits: Limits
                     ) -> dict[str, Any] | None:
    """The ``limit_exceeded`` error of the first check over its limit, else None. Each check
    is (the Limits field, the planned value, what it is, what the tenant can do)."""
    for limit, value, what, advice in checks:
        bound = getattr(limits, limit)
        if value > bound:
            return {"code": "limit_exceeded", "param": "training_file",
                    "message": f"the job plans {what}, over this server's limit "
                               f"{limit}={bound}; {advice}, or ask the operator to raise "
                               f"limits.{limit} in the service config"}
    return None


class Integration(_Strict):
    """A tracker a tenant may use: the variables its training process gets for it."""

    env: dict[str, str] = Field(default_factory=dict, description="Variables given to the "
                                "training process of this tenant's jobs that use the "
                                "integration (an API key, a host).")


class Quota(_Strict):
    """What one tenant may hold and run at once."""

    max_running_jobs: int = Field(2, ge=0, description="Jobs of the tenant running at once.")
    max_queued_jobs: int = Field(100, ge=0, description="Unfinished jobs of the tenant not "
                                 "running (validating files, queued, paused).")
    max_files: int = Field(1000, ge=0, description="Files the tenant stores.")
    max_stored_mb: int = Field(10240, ge=0, description="Bytes of the tenant's files, in MiB.")
    models: list[str] = Field(default_factory=lambda: ["tiny"], description="Base models the "
                              "tenant may fine-tune: names or shell patterns ('Qwen/*', '*'). "
                              "A tenant's own ft: models are always allowed.")
    integrations: dict[str, Integration] = Field(default_factory=dict, description="Trackers "
                                                 "the tenant's jobs may send metrics to.")

    def allows_model(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class Retention(_Strict):
    """How long the service keeps what tenants leave (None: until deleted)."""

    files_days: float | None = Field(None, gt=0, description="Delete a file this many days "
                                     "after upload, once no unfinished job reads it.")
    jobs_days: float | None = Field(None, gt=0, description="Delete an ended job (its run "
                                    "directory, checkpoints and events) this many days after "
                                    "it ended.")
    sweep_every_s: float = Field(600.0, gt=0, description="Seconds between retention sweeps.")


class Graders(_Strict):
    """What graders may do on this server: python graders, the score model, how many at once."""

    allow_python: bool = Field(True, description="Whether python graders run (each in a "
                               "separate process, limited in time and memory, without network "
                               "or the server's files). Off: a python grader is refused with "
                               "400 grader_not_allowed.")
    python_timeout_s: float = Field(10.0, gt=0, le=600, description="Seconds of wall-clock "
                                    "time a python grader may take on one sample.")
    python_memory_mb: int = Field(256, ge=32, description="Address space a python grader's "
                                  "process may use, in MiB.")
    score_model_base_url: str | None = Field(None, description="The OpenAI-compatible endpoint "
                                             "(.../v1) score_model graders call; unset: they "
                                             "report an error.")
    score_model_api_key: str | None = Field(None, description="The bearer key for "
                                            "score_model_base_url (write ${VAR} in the file).")
    embedding_base_url: str | None = Field(None, description="The OpenAI-compatible endpoint "
                                           "(.../v1, serving /embeddings) text_similarity "
                                           "graders with evaluation_metric cosine use; unset: "
                                           "cosine graders report an error, and reinforcement "
                                           "jobs with one are refused.")
    embedding_model: str | None = Field(None, description="The model asked for at "
                                        "embedding_base_url (required with it).")
    embedding_api_key: str | None = Field(None, description="The bearer key for "
                                          "embedding_base_url (write ${VAR} in the file).")
    max_concurrent: int = Field(4, ge=1, description="Python graders, score model and "
                                "embedding calls one API process runs at once; a request that "
                                "waits 30 s for a turn gets 503 server_busy.")
    _embedder: EmbeddingEndpoint | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _embedding_needs_a_model(self) -> Graders:
        if self.embedding_base_url and not self.embedding_model:
            raise ValueError("embedding_base_url is set without embedding_model: name the "
                             "model the endpoint serves")
        return self

    def settings(self) -> GraderSettings:
        """What ``preftune.graders.grade`` is lent on this server (one embedder, so its cache
        of vectors lasts across requests)."""
        endpoint = (ModelEndpoint(self.score_model_base_url, self.score_model_api_key)
                    if self.score_model_base_url else None)
        if self._embedder is None and self.embedding_base_url and self.embedding_model:
            self._embedder = EmbeddingEndpoint(self.embedding_base_url, self.embedding_model,
                                               self.embedding_api_key)
        return GraderSettings(allow_python=self.allow_python,
                              python_timeout_s=self.python_timeout_s,
                              python_memory_mb=self.python_memory_mb,
                              score_model_endpoint=endpoint, embedder=self._embedder)


class Reinforcement(_Strict):
    """Where reinforcement jobs sample their answers."""

    rft_inference: Literal["preftune", "vllm"] = Field(
        "preftune", description="preftune: preftune's inference server (transformers "
        "generate, CPU or GPU); vllm: vllm serve on the worker's GPU, loading each new LoRA "
        "adapter at run time (jobs must train a LoRA).")
    rft_vllm_command: str = Field("vllm serve", description="The command that starts vLLM.")
    rft_vllm_args: list[str] = Field(default_factory=list, description="More arguments for "
                                     "vllm serve (--gpu-memory-utilization 0.5, ...).")


class ServiceConfig(_Strict):
    """Everything the operator sets; defaults fit a small shared server."""

    limits: Limits = Field(default_factory=Limits)
    quota: Quota = Field(default_factory=Quota)
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per tenant "
                                               "name: quota fields that differ from quota.")
    retention: Retention = Field(default_factory=Retention)
    graders: Graders = Field(default_factory=Graders)
    reinforcement: Reinforcement = Field(default_factory=Reinforcement)
    metrics_token: str | None = Field(None, description="The bearer token /metrics answers to; "
                                      "unset: /metrics answers 401 to everyone.")
    failed_auth_per_minute: int = Field(20, ge=1, description="Failed key checks a client "
                                        "address may make in a minute before it gets 429.")
    pass_env: list[str] = Field(default_factory=list, description="Operator variables every "
                                "training process gets (HF_HOME, HF_HUB_OFFLINE, ...); nothing "
                                "else of the server's environment reaches it.")

    def model_post_init(self, _context: Any) -> None:
        for name, override in self.tenants.items():
            try:
                Quota.model_validate({**self.quota.model_dump(), **override})
            except ValidationError as e:
                raise ValueError(f"tenants.{name}: {_first(e)}") from None

    def quota_for(self, tenant_name: str) -> Quota:
        """The tenant's quota: ``quota`` with the tenant's overrides."""
        override = self.tenants.get(tenant_name)
        if not override:
            return self.quota
        return Quota.model_validate({**self.quota.model_dump(), **override})

    def max_running(self) -> dict[str, int]:
        """Running-job caps by tenant name, and the default under ``""``."""
        caps = {"": self.quota.max_running_jobs}
        caps.update({name: self.quota_for(name).max_running_jobs for name in self.tenants})
        return caps


# Flags of `preftune serve` / `preftune worker`: section and field of each.
FLAG_SECTIONS: dict[str, type[BaseModel]] = {"limits": Limits, "quota": Quota,
                                             "retention": Retention, "graders": Graders,
                                             "reinforcement": Reinforcement}


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None
         ) -> ServiceConfig:
    """The file's config (defaults without one), with ``overrides`` over it: keys are a
    section's field (``max_epochs``) or a top-level field (``metrics_token``)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read the service config {path}: {e.strerror}",
                              ["check the path given to --config"]) from e
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"the service config {path} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"the service config {path} must be a mapping of sections",
                              ["see docs/service.md, 'Operating preftune serve'"])
    data = _expand(data, str(path or "the flags"))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section = next((s for s, m in FLAG_SECTIONS.items() if key in m.model_fields), None)
        if section is None:
            data[key] = value
        else:
            data.setdefault(section, {})[key] = value
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid service config ({path or 'flags'}): {_first(e)}",
                          ["see docs/service.md, 'Operating preftune serve'"]) from None


def _expand(value: Any, where: str) -> Any:
    """``${VAR}`` in strings, from the operator's environment; an unset one is an error."""
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, str):
        def one(found: re.Match[str]) -> str:
            got = settings.env_value(found.group(1))
            if got is None:
                raise ConfigError(f"{where}: ${{{found.group(1)}}} is not set in the "
                                  "environment", [f"export {found.group(1)}=..."])
            return got

        return _VAR.sub(one, value)
    return value


def _first(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(p) for p in problem["loc"])
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}"
