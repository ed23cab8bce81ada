"""Process-wide settings: the only module that reads environment variables.

PREFTUNE_CACHE   where built artefacts live (the tiny model, reference log-prob caches);
                 default $XDG_CACHE_HOME/preftune or ~/.cache/preftune.
MLFLOW_TRACKING_URI  the MLflow tracking server the mlflow tracker logs to (default: a store
                 inside the run directory).
PREFTUNE_SERVICE_DIR  where the job service keeps uploads and job directories (default
                 $XDG_DATA_HOME/preftune or ~/.local/share/preftune).
PREFTUNE_DATABASE_URL  the service's database (default: SQLite in the service directory).
PREFTUNE_SERVER, PREFTUNE_API_KEY  the server and key `preftune jobs` / `files` talk to.
PREFTUNE_METRICS_TOKEN  the bearer token the service's /metrics answers to (when the service
                 config sets none).
PREFTUNE_SCORE_MODEL_API_KEY, PREFTUNE_EMBEDDING_API_KEY  the bearer keys the ``grader`` reward
                 and `preftune graders run` send to the score model and embedding endpoints
                 (a service worker sets them from the operator's ``graders`` settings).
PREFTUNE_WORKER_PID  set by a service worker for the training process it starts (train, rl launch):
                 it stops when that worker is gone (see ``engine.stop.watch_worker``).
ACCELERATE_MIXED_PRECISION, MASTER_PORT, RANK, ...  read, never set, to tell a lone process
                 of `accelerate launch` (see ``lone_accelerate_process``).
Any variable a YAML environment config names as ``${VAR}`` (see ``env_value`` and
                 ``preftune.rl.envconfig``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path


def cache_dir() -> Path:
    explicit = os.environ.get("PREFTUNE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "preftune"


def mlflow_tracking_uri() -> str | None:
    """The MLflow tracking server the user chose (MLFLOW_TRACKING_URI), or None if unset."""
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def allow_mlflow_file_store() -> None:
    """Let MLflow 3 use a local file store, which it refuses unless opted in.

    preftune opts in only for its own default, the run directory's ``mlruns``; a user's
    explicit choice of the variable is kept.
    """
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def lone_accelerate_process() -> bool:
    """Whether `accelerate launch` started this one process although it was asked for more.

    Without a GPU, and without --multi_gpu or a config file that says MULTI_GPU, accelerate
    takes its simple launcher: asked for several processes it sets MASTER_PORT, yet starts
    a single one and gives it no rank. torchrun (behind --multi_gpu) and mpirun set a rank.
    """
    env = os.environ
    launched = "ACCELERATE_MIXED_PRECISION" in env and "MASTER_PORT" in env
    ranks = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
    return launched and not any(name in env for name in ranks)


def service_dir() -> Path:
    explicit = os.environ.get("PREFTUNE_SERVICE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "preftune"


def database_url(service_root: Path | None = None) -> str:
    """PREFTUNE_DATABASE_URL, else a SQLite file in the service directory."""
    explicit = os.environ.get("PREFTUNE_DATABASE_URL")
    if explicit:
        return explicit
    return f"sqlite:///{(service_root or service_dir()) / 'preftune.db'}"


def server_url() -> str:
    return os.environ.get("PREFTUNE_SERVER") or "http://127.0.0.1:8000"


def api_key() -> str | None:
    return os.environ.get("PREFTUNE_API_KEY") or None


def worker_pid() -> int | None:
    """The pid of the service worker that started this training process, if one did."""
    value = os.environ.get("PREFTUNE_WORKER_PID", "")
    return int(value) if value.isdigit() else None


def env_value(name: str) -> str | None:
    """The value of any environment variable, for ``${VAR}`` in YAML configs; None if unset."""
    return os.environ.get(name)


def score_model_api_key() -> str | None:
    return os.environ.get("PREFTUNE_SCORE_MODEL_API_KEY") or None


def embedding_api_key() -> str | None:
    return os.environ.get("PREFTUNE_EMBEDDING_API_KEY") or None


def metrics_token() -> str | None:
    return os.environ.get("PREFTUNE_METRICS_TOKEN") or None


# What a service training process takes from the server's environment: what Python, the
# locale and the accelerators need. Never credentials: HF_TOKEN, WANDB_API_KEY, cloud keys and
# the like stay the operator's.
TRAINING_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER",
                "LOGNAME", "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_HOME",
                "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM")


def environment_names() -> list[str]:
    """Every variable this process has: what a local, single-user run passes on whole."""
    return list(os.environ)


def training_env(home: Path, passed: Iterable[str] = (),
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a service training process.

    The allow-list above, the operator's ``passed`` names, and ``extra`` (a tenant's
    integration variables). HOME is the job's own directory, so that credentials stored under
    the operator's home (``~/.netrc`` for W&B, the Hugging Face token file) are not found;
    the model caches stay the operator's, so weights are downloaded once. The Hugging Face
    hub is told not to send a stored token.
    """
    env = {name: os.environ[name] for name in (*TRAINING_ENV, *passed) if name in os.environ}
    user_home = Path.home()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(user_home / ".cache")
    env.update({
        "HOME": str(home),
        "XDG_CACHE_HOME": cache_home,
        "HF_HOME": os.environ.get("HF_HOME") or str(Path(cache_home) / "huggingface"),
        "HF_TOKEN_PATH": str(home / ".no-hf-token"),
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "PREFTUNE_CACHE": str(cache_dir()),
        "PYTHONUNBUFFERED": "1",
    })
    for name in passed:  # the operator may pass HF_HOME and the like on purpose
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra or {})
    return env
