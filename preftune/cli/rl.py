"""``preftune rl ...``: the online-RL processes (trajectory API first; more join this group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from preftune.cli.common import out

rl_app = typer.Typer(help="Online RL: the trajectory API, a local inference server and the "
                     "GRPO trainer.", no_args_is_help=True)


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


@rl_app.command("train")
def train_cmd(
    model_name: Annotated[str, typer.Option(help="tiny, an alias, a hub id or a local "
                                                 "directory.")] = "tiny",
    training_steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 8,
    gradient_accumulation_steps: Annotated[int, typer.Option(help="Micro-batches per "
                                                                  "step.")] = 1,
    seq_len: Annotated[int, typer.Option(help="Longest sequence, in tokens.")] = 512,
    learning_rate: Annotated[float, typer.Option(help="Learning rate.")] = 1e-5,
    lora: Annotated[bool, typer.Option(help="Train a LoRA adapter.")] = True,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    kl_coef: Annotated[float, typer.Option(help="KL penalty to the starting model.")] = 0.0,
    clip_eps: Annotated[float, typer.Option(help="Clip range of the ratio.")] = 0.2,
    clip_eps_high: Annotated[float | None, typer.Option(help="Upper clip (DAPO).")] = None,
    loss_type: Annotated[str, typer.Option(help="grpo, dr_grpo or dapo.")] = "grpo",
    api_url: Annotated[str, typer.Option(help="The trajectory API.")] = "http://127.0.0.1:8000",
    weights_dir: Annotated[str | None, typer.Option(help="Where to publish weights for the "
                                                         "inference server.")] = None,
    publish_every: Annotated[int, typer.Option(help="Publish every N steps.")] = 1,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 10,
    output_dir: Annotated[str | None, typer.Option(help="The run directory.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    resume: Annotated[Path | None, typer.Option(help="Continue this run directory.")] = None,
) -> None:
    """Train with GRPO on the batches the trajectory API forms from environments' groups."""
    given = dict(locals())
    from preftune.rl.train import GRPOConfig, build_config, train_grpo

    if resume is not None:
        run = train_grpo(None, resume=resume, on_step=_print_step)
    else:
        values: dict[str, Any] = {k: v for k, v in given.items()
                                  if k in GRPOConfig.model_fields and v is not None}
        run = train_grpo(build_config(values), on_step=_print_step)
    out.print(f"run directory: {run.path}")


def _print_step(row: dict[str, float]) -> None:
    out.print(f"step {int(row['step'])}: loss {row['loss']:.4f}  reward {row['mean_reward']:.3f}"
              f" (std {row['reward_std']:.3f})  clip {row['clip_frac']:.2f}  "
              f"{row['tokens_per_second']:,.0f} tok/s")
