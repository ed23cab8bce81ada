"""``preftune rl ...``: the online-RL processes (trajectory API first; more join this group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from preftune import settings
from preftune.cli.common import out
from preftune.cli.options import config_flags
from preftune.rlconfig import GRPOConfig

# People bring Atropos' spellings (--group_size, --model_name): underscores in option names
# read as dashes.
_OPTION_NAMES = {"token_normalize_func": lambda name: name.replace("_", "-")}
rl_app = typer.Typer(help="Online RL: the trajectory API, a local inference server and the "
                     "GRPO trainer.", no_args_is_help=True, context_settings=_OPTION_NAMES)


env_app = typer.Typer(help="A dataset environment: sample groups, score them, send or write "
                      "them.", no_args_is_help=True)
rl_app.add_typer(env_app, name="env")


def register(app: typer.Typer) -> None:
    app.add_typer(rl_app, name="rl")


@rl_app.command("api")
def api_cmd(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the trajectory API (wire-compatible with Atropos): environments send scored
    groups, the trainer pulls batches."""
    from preftune.rl.trajectory_api import serve

    out.print(f"trajectory API on http://{host}:{port}")
    serve(host=host, port=port)


@rl_app.command("serve-model")
def serve_model_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL_OR_RUN",
                                         help="tiny, an alias, a hub id, a local directory "
                                              "or a run directory.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9001,
    weights_dir: Annotated[Path | None, typer.Option(
        help="Load the newest weights the trainer publishes here, without restarting.")]
    = None,
    max_batch: Annotated[int, typer.Option(help="Most sequences generated together.")] = 16,
    seed: Annotated[int | None, typer.Option(help="Seed the sampler once at start.")] = None,
) -> None:
    """Serve OpenAI-compatible /v1/completions and /v1/chat/completions (transformers
    generate, token log-probs, concurrent requests batched)."""
    from preftune.rl.inference import serve

    out.print(f"inference server for {model} on http://{host}:{port}/v1")
    serve(model, host=host, port=port, weights_dir=weights_dir, max_batch=max_batch,
          seed=seed)


@rl_app.command("train", context_settings={"allow_interspersed_args": True})
@config_flags(GRPOConfig)
def train_cmd(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="More options as key=value (any GRPO option or alias: TRL's beta, epsilon, "
             "max_steps; Atropos's names).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="A YAML file of options.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run directory.")] = None,
    flags: dict[str, Any] | None = None,
) -> None:
    """Train with GRPO on the batches the trajectory API forms from environments' groups
    (on several GPUs: accelerate launch --num_processes N -m preftune rl train ...); every
    option is a flag, a key=value or a line of --config."""
    from preftune.cli.common import warn_lone_accelerate_process
    from preftune.rl.train import train_grpo
    from preftune.rlconfig import grpo_config

    warn_lone_accelerate_process()

    if resume is not None:
        from preftune.errors import UsageError
        from preftune.rl.train import RESUME_OPTIONS

        fixed = sorted(set(flags or {}) - set(RESUME_OPTIONS))
        if fixed or overrides or config is not None:
            raise UsageError("a resumed run keeps its options: only where its processes are "
                             f"may change ({', '.join(RESUME_OPTIONS)})",
                             [f"leave out {', '.join(fixed) or '--config and key=value'}"])
        run = train_grpo(None, resume=resume, on_step=_print_step, where=flags or {})
    else:
        run = train_grpo(grpo_config(config, flags or {}, overrides), on_step=_print_step)
    out.print(f"run directory: {run.path}")


def _print_step(row: dict[str, float]) -> None:
    out.print(f"step {int(row['step'])}: loss {row['loss']:.4f}  reward {row['mean_reward']:.3f}"
              f" (std {row['reward_std']:.3f})  clip {row['clip_frac']:.2f}  "
              f"{row['tokens_per_second']:,.0f} tok/s")


EnvConfigName = Annotated[str | None, typer.Option(
    "--config", help="A bundled config's name (tiny, gsm8k) or a YAML path.")]


def _environment(config: str | None, flags: dict[str, Any]) -> Any:
    from preftune.rl.envconfig import load_env_config
    from preftune.rl.envs.dataset import DatasetEnvironment

    if flags.get("reward_functions") is not None:
        flags["reward_functions"] = list(flags["reward_functions"])
    return DatasetEnvironment(load_env_config(config, flags))


@env_app.command("serve")
def env_serve(config: EnvConfigName = None, group_size: int | None = None,
              rollout_server_url: str | None = None, base_url: str | None = None,
              dataset_name: str | None = None, split: str | None = None,
              reward_functions: list[str] | None = None, max_tokens: int | None = None,
              temperature: float | None = None, max_num_workers: int | None = None,
              tokenizer_name: str | None = None, model_name: str | None = None,
              max_token_length: int | None = None,
              ensure_scores_are_not_same: bool | None = None,
              prompt_field: str | None = None, answer_field: str | None = None,
              system_prompt: str | None = None) -> None:
    """Register with the trajectory API and send scored groups until the data or the
    trainer's steps run out."""
    flags = {k: v for k, v in locals().items() if k != "config"}
    summary = _environment(config, flags).serve()
    out.print(f"sent {summary.sent} groups; dropped {summary.dropped}"
              + ("; the trainer has what it needs" if summary.stopped_by_trainer else ""))


@env_app.command("process")
def env_process(output: Annotated[Path, typer.Option(help="JSONL of scored groups.")],
                num_items: Annotated[int, typer.Option(help="Items to sample.")] = 16,
                config: EnvConfigName = None, group_size: int | None = None,
                base_url: str | None = None, dataset_name: str | None = None,
                split: str | None = None, reward_functions: list[str] | None = None,
                max_tokens: int | None = None, temperature: float | None = None,
                tokenizer_name: str | None = None, model_name: str | None = None,
                prompt_field: str | None = None, answer_field: str | None = None,
                system_prompt: str | None = None,
                ensure_scores_are_not_same: bool | None = None) -> None:
    """Sample and score groups without a trainer; write them as JSONL (for `rl to-pairs`)."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "output", "num_items")}
    written = _environment(config, flags).process(output, num_items)
    out.print(f"wrote {written} scored groups to {output}")


@env_app.command("evaluate")
def env_evaluate(config: EnvConfigName = None, base_url: str | None = None,
                 dataset_name: str | None = None, split: str | None = None,
                 reward_functions: list[str] | None = None, max_tokens: int | None = None,
                 temperature: float | None = None, group_size: int | None = None,
                 model_name: str | None = None, tokenizer_name: str | None = None) -> None:
    """Sample the eval split and report the mean reward and each reward's mean."""
    flags = {k: v for k, v in locals().items() if k != "config"}
    report = _environment(config, flags).evaluate()
    out.print(f"{report.items} items, {report.completions} completions: mean reward "
              f"{report.mean_reward:.4f}")
    for name, value in report.reward_means.items():
        out.print(f"  {name}: {value:.4f}")


@rl_app.command("to-pairs")
def to_pairs_cmd(
    scored: Annotated[Path, typer.Argument(help="Scored groups from `rl env process`.")],
    output: Annotated[Path, typer.Option(help="Preference pairs (JSONL) for preftune "
                                              "train.")],
) -> None:
    """Best vs worst completion of each group, as a preference dataset."""
    from preftune.rl.pairs import to_pairs

    summary = to_pairs(scored, output)
    out.print(f"{summary.pairs} pairs from {summary.groups} groups (skipped: "
              f"{summary.equal_scores} with equal scores, {summary.same_text} with the same "
              f"text) -> {output}")


@rl_app.command("launch")
def launch_cmd(
    config: Annotated[str, typer.Option("--config", help="A bundled config's name (tiny, "
                                                         "gsm8k) or a YAML path.")],
    output_dir: Annotated[Path | None, typer.Option(help="The run directory (default: "
                                                         "experiments/rl_<config>_<time>).")]
    = None,
    api_port: Annotated[int | None, typer.Option(help="Trajectory API port (0: any free "
                                                      "port).")] = None,
    inference_port: Annotated[int | None, typer.Option(help="Inference server port (0: "
                                                            "any free port).")] = None,
    trainer_processes: Annotated[int | None, typer.Option(
        min=1, help="Train on N processes (accelerate launch: one a GPU; gloo on CPUs). "
        "Default: launch.trainer_processes of the config, else 1.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --output-dir from its last checkpoint (the "
        "trainer resumes; the inference server starts from its last published weights).")]
    = False,
) -> None:
    """Start the trajectory API, the inference server, the environment and the GRPO trainer
    together; stop them all when training ends (or on Ctrl-C or SIGTERM: the trainer first,
    which checkpoints after its current step)."""
    import sys
    from datetime import UTC, datetime

    from preftune.errors import ConfigError, UsageError
    from preftune.rl.envconfig import config_path, load_env_config, read_config
    from preftune.rl.launch import Child, launch
    from preftune.rlconfig import build_config

    worker = settings.worker_pid()
    if worker is not None:  # a service worker's job: stop (and so stop every child) without it
        from preftune.engine.stop import watch_worker

        watch_worker(worker)
    path = config_path(config)
    data = read_config(path)
    trainer, opts = dict(data.get("trainer") or {}), dict(data.get("launch") or {})
    unknown = set(opts) - _LAUNCH_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in launch: {', '.join(sorted(unknown))}",
                          [f"launch takes {', '.join(sorted(_LAUNCH_KEYS))}"])
    server = opts.get("inference", "preftune")
    if server not in ("preftune", "vllm"):
        raise ConfigError(f"{path}: launch.inference is {server!r}",
                          ["use preftune (rl serve-model) or vllm (vllm serve)"])
    api = _port(api_port if api_port is not None else opts.get("api_port", 8000))
    inference = _port(inference_port if inference_port is not None
                      else opts.get("inference_port", 9001))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H%M%S")
    if resume and (output_dir is None or not (output_dir / "config.json").exists()):
        raise UsageError("--resume continues the run in --output-dir, and "
                         f"{output_dir or 'no --output-dir'} holds none",
                         ["pass the run directory a previous rl launch wrote"])
    run = output_dir or Path("experiments") / f"rl_{path.stem}_{stamp}"
    api_url, base_url = f"http://127.0.0.1:{api}", f"http://127.0.0.1:{inference}"
    if server == "vllm":
        trainer = {"lora": True, **trainer, "vllm_url": base_url}
    cfg = build_config({**trainer, "api_url": api_url, "output_dir": str(run)})
    env = load_env_config(path, {"rollout_server_url": api_url, "base_url": base_url})
    if env.tokenizer_name != cfg.model_name:
        out.print(f"[yellow]warning:[/] the environment tokenizes with {env.tokenizer_name}, "
                  f"the trainer trains {cfg.model_name}")
    me = [sys.executable, "-m", "preftune"]
    processes = trainer_processes or int(opts.get("trainer_processes", 1))
    flags = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in trainer.items() if not isinstance(v, bool)]  # report_to: a, b
    flags += [f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in trainer.items()
              if isinstance(v, bool)]
    env_flags = ["--rollout-server-url", api_url, "--base-url", base_url]
    if server == "vllm":
        inference_child = _vllm_child(cfg, opts, inference, base_url)
        env_flags += ["--model-name", cfg.vllm_lora_name]
    else:
        inference_child = Child("inference", [*me, "rl", "serve-model", cfg.model_name,
                                              "--port", str(inference), "--weights-dir",
                                              str(run / "published"), "--seed", str(cfg.seed)],
                                ready_url=f"{base_url}/health")
    children = [
        Child("api", [*me, "rl", "api", "--port", str(api)], ready_url=f"{api_url}/status"),
        inference_child,
        Child("trainer", [*_trainer_launcher(processes, me), "rl", "train",
                          *(["--resume", str(run)] if resume else [*flags, "--output-dir",
                                                                   str(run)]),
                          "--api-url", api_url,
                          *(["--vllm-url", base_url] if resume and server == "vllm" else [])]),
        Child("env", [*me, "rl", "env", "serve", "--config", str(path), *env_flags]),
    ]
    out.print(f"launching {path.name}: API {api_url}, inference {base_url}, run {run}"
              + (f", trainer on {processes} processes" if processes > 1 else ""))
    # vLLM compiles and captures CUDA graphs before it answers /health: give it longer.
    code = launch(children, main="trainer",
                  echo=lambda line: out.print(line, markup=False, highlight=False),
                  ready_timeout_s=900.0 if server == "vllm" else 300.0)
    out.print(f"run directory: {run}")
    raise typer.Exit(code)


_LAUNCH_KEYS = {"api_port", "inference_port", "inference", "vllm_command", "vllm_args",
                "trainer_processes"}


def _trainer_launcher(processes: int, me: list[str]) -> list[str]:
    """How the trainer starts: preftune itself, or under accelerate launch for several
    processes (--multi_gpu: without it accelerate starts one process where it sees no GPU)."""
    if processes == 1:
        return me
    return [me[0], "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(processes), "--main_process_port", str(_port(0)), "-m", "preftune"]
# The ranks vLLM's --max-lora-rank accepts.
_VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _vllm_child(cfg: Any, opts: dict[str, Any], port: int, base_url: str) -> Any:
    """``vllm serve`` with run-time adapter loading on, for ``launch: {inference: vllm}``."""
    import shlex
    import shutil

    from preftune.errors import ConfigError
    from preftune.rl.launch import Child

    command = shlex.split(str(opts.get("vllm_command", "vllm serve")))
    if not command or shutil.which(command[0]) is None:
        raise ConfigError(f"launch.inference is vllm, but {command[0] if command else '?'!r} "
                          "is not on PATH",
                          ["install vLLM on this GPU machine (pip install vllm), or set "
                           "launch.vllm_command"])
    extra = opts.get("vllm_args") or []
    if not isinstance(extra, list):
        raise ConfigError("launch.vllm_args is a list of arguments for vllm serve",
                          ['e.g. vllm_args: ["--gpu-memory-utilization", "0.5"]'])
    rank = next((r for r in _VLLM_RANKS if r >= cfg.lora_rank), cfg.lora_rank)
    return Child("inference", [*command, cfg.model_name, "--host", "127.0.0.1", "--port",
                               str(port), "--enable-lora", "--max-lora-rank", str(rank),
                               "--max-loras", "1", *[str(a) for a in extra]],
                 ready_url=f"{base_url}/health",
                 env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})


def _port(port: int) -> int:
    """``port``, or a free one for 0."""
    if port:
        return port
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
