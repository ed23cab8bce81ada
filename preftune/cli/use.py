"""``preftune eval``, ``generate`` and ``chat``: using what was trained."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from preftune.cli.common import out
from preftune.errors import UsageError

if TYPE_CHECKING:
    from preftune.runs.evaluation import EvalResult

Source = Annotated[str | None, typer.Argument(help="A run directory, a model directory, or "
                                              "anything --model takes.")]
Checkpoint = Annotated[str | None, typer.Option(help="A run's checkpoint: its name in "
                                                "checkpoints.jsonl, or 'latest'.")]


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("generate")(generate_cmd)
    app.command("chat")(chat_cmd)


def eval_cmd(
    source: Source = None,
    dataset: Annotated[str, typer.Option(help="Preference data to score.")] = "",
    model: Annotated[str | None, typer.Option(help="Score this model instead of a run.")]
    = None,
    compare_to: Annotated[str | None, typer.Option(help="Score another run or model on the "
                                                   "same data, side by side (the run's "
                                                   "reference by average log-prob).")] = None,
    per_example: Annotated[Path | None, typer.Option(help="Write one CSV row per pair.")]
    = None,
    algo: Annotated[str | None, typer.Option(help="Loss to score with (default: the run's).")]
    = None,
    beta: Annotated[float | None, typer.Option(help="Beta (default: the run's).")] = None,
    reference: Annotated[str | None, typer.Option(help="Reference model (default: the run's "
                                                  "base model).")] = None,
    reference_free: Annotated[bool, typer.Option(help="Score by average log-probability, "
                                                 "without a reference.")] = False,
    checkpoint: Checkpoint = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Pairs per forward pass.")] = 8,
    max_length: Annotated[int | None, typer.Option(
        help="Longest prompt + response in tokens (default: the run's, else 1024).")] = None,
    max_prompt_length: Annotated[int | None, typer.Option(
        help="Longest prompt in tokens (default: the run's, else 512).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
    = False,
) -> None:
    """Preference accuracy, reward margin, loss and log-probs of a model on preference data."""
    from preftune.config import TrainConfig
    from preftune.data.validate import load_preferences
    from preftune.models.locate import locate
    from preftune.runs.evaluation import Scoring, average_logps_views, evaluate

    name = _one_source(source, model)
    if not dataset:
        raise UsageError("no data to score", ["pass --dataset PATH"])
    data = load_preferences(dataset)
    primary = locate(name, checkpoint)
    scoring = Scoring.choose(primary, algo, beta, reference, reference_free)
    # Pairs are cut as the run was trained on them unless told otherwise.
    trained = primary.run_config or TrainConfig()
    max_length = max_length or trained.max_length
    max_prompt_length = max_prompt_length or trained.max_prompt_length
    models = [primary] + ([locate(compare_to)] if compare_to else [])
    results = []
    for located in models:
        with _progress(f"scoring {located.name}", not as_json) as advance:
            results.append(evaluate(located, data, scoring.for_model(located), batch_size,
                                    max_length, max_prompt_length, advance))
    columns = _columns(results, average_logps_views(results))
    if per_example is not None:
        _write_per_example(per_example, columns)
    if as_json:
        print(json.dumps({"scoring": scoring.description, "results": _json_results(columns)},
                         indent=2))
        return
    for description in dict.fromkeys(c.result.scoring.description for c in columns):
        out.print(f"scoring: {escape(description)}")
    for located in models:
        if scoring.is_reference(located):
            out.print(f"{escape(located.name)} is the reference: scored by average log-prob, "
                      "not against itself")
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    for c in columns:
        table.add_column(escape(c.result.name), justify="right")
    table.add_row("scoring", *(escape(c.result.scoring.label) for c in columns))
    for key in ("pairs", "preference_accuracy", "reward_margin", "loss", "chosen_logps",
                "rejected_logps"):
        table.add_row(key, *(_fmt(key, c.result.summary[key]) for c in columns))
    out.print(table)
    if per_example is not None:
        out.print(f"per-pair scores: {escape(str(per_example))}")


@dataclass(frozen=True)
class _Column:
    """One model under one scoring: a column of the table, a block of the CSV."""

    result: EvalResult
    primary: bool  # the model being evaluated, not the one it is compared to
    view: bool  # a model's second scoring, by average log-prob


def _columns(results: list[EvalResult], views: list[EvalResult | None]) -> list[_Column]:
    """Each model's column, followed by its average-log-prob view where it has one."""
    columns = []
    for i, (result, view) in enumerate(zip(results, views, strict=True)):
        columns.append(_Column(result, primary=i == 0, view=False))
        if view is not None:
            columns.append(_Column(view, primary=i == 0, view=True))
    return columns


def _json_results(columns: list[_Column]) -> dict[str, Any]:
    """``{name: {"scoring": ..., summary...}}``; a view nests under its model's entry as
    ``"reference_free"``."""
    report: dict[str, Any] = {}
    for c in columns:
        entry = {"scoring": c.result.scoring.description, **c.result.summary}
        if c.view:
            report[c.result.name]["reference_free"] = entry
        else:
            report[c.result.name] = entry
    return report


def _one_source(source: str | None, model: str | None) -> str:
    if (source is None) == (model is None):
        raise UsageError("name one model: a run directory or model as the argument, or --model",
                         ["preftune eval RUN_DIR --dataset data.jsonl"])
    return source or model or ""


def _fmt(key: str, value: float) -> str:
    return f"{int(value)}" if key == "pairs" else f"{value:.4f}"


class _progress:
    """A progress bar over pairs, shown on a terminal only."""

    def __init__(self, label: str, show: bool) -> None:
        self.bar = Progress(TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(),
                            console=out, transient=True,
                            disable=not (show and out.is_terminal))
        self.task: Any = None

    def __enter__(self) -> Any:
        self.bar.start()
        self.task = self.bar.add_task("score", total=None)

        def advance(done: int, total: int) -> None:
            self.bar.update(self.task, completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _write_per_example(path: Path, columns: list[_Column]) -> None:
    """One row per pair: the primary's values, then the other model's prefixed with its name;
    a view by average log-prob adds its rewards, margin, correct and loss prefixed with
    ``reference-free:`` (its log-probs and lengths are its model's)."""
    from preftune.fsutil import atomic_path

    logps = ["chosen_logps", "rejected_logps", "chosen_tokens", "rejected_tokens"]
    scored = ["chosen_reward", "rejected_reward", "margin", "correct", "loss"]
    blocks = [(c, ("" if c.primary else f"{c.result.name}:")
               + ("reference-free:" if c.view else ""),
               scored if c.view else logps + scored) for c in columns]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["pair", "record"] + [prefix + k for _, prefix, keys in blocks
                                              for k in keys])
        for i, row in enumerate(columns[0].result.per_pair):
            writer.writerow([row["pair"], row["record"]] + [
                c.result.per_pair[i][k] for c, _, keys in blocks for k in keys])


def _sampler(source: str, temperature: float, top_p: float, max_new_tokens: int,
             checkpoint: str | None, seed: int | None, batch_size: int = 8) -> Any:
    from preftune.sampler import Sampler

    return Sampler(source, temperature=temperature, max_tokens=max_new_tokens, top_p=top_p,
                   checkpoint=checkpoint, seed=seed, batch_size=batch_size)


Temperature = Annotated[float, typer.Option(min=0.0, help="0 is greedy.")]
TopP = Annotated[float, typer.Option(help="Nucleus sampling mass.")]
MaxNew = Annotated[int, typer.Option(min=1, help="Most new tokens per completion.")]
Seed = Annotated[int | None, typer.Option(help="Same seed, same samples.")]


def generate_cmd(
    source: Annotated[str, typer.Argument(help="A run directory or model.")],
    prompt: Annotated[list[str] | None, typer.Option(help="A prompt (repeatable).")] = None,
    prompts_file: Annotated[Path | None, typer.Option(
        help="One prompt per line, or JSONL with a 'prompt' (text or messages).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSONL here instead of printing.")]
    = None,
    temperature: Temperature = 0.7,
    top_p: TopP = 1.0,
    max_new_tokens: MaxNew = 256,
    num_samples: Annotated[int, typer.Option(min=1, help="Completions per prompt.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 8,
    checkpoint: Checkpoint = None,
    seed: Seed = None,
) -> None:
    """Sample completions of prompts from a trained run or a model."""
    prompts: list[Any] = list(prompt or [])
    if prompts_file is not None:
        prompts += _read_prompts(prompts_file)
    if not prompts:
        raise UsageError("no prompt given", ["pass --prompt TEXT or --prompts-file FILE"])
    sampler = _sampler(source, temperature, top_p, max_new_tokens, checkpoint, seed,
                       batch_size)
    completions = sampler.sample(prompts, num_samples)
    rows = [{"prompt": p, "completions": c} for p, c in zip(prompts, completions, strict=True)]
    if output is not None:
        from preftune.fsutil import write_jsonl

        write_jsonl(output, rows)
        out.print(f"wrote {len(rows)} prompts x {num_samples} to {escape(str(output))}")
        return
    for row in rows:
        shown = row["prompt"] if isinstance(row["prompt"], str) else json.dumps(row["prompt"])
        out.print(f"[bold]prompt:[/] {escape(shown)}")
        for k, text in enumerate(row["completions"]):
            label = "completion" if num_samples == 1 else f"completion {k + 1}"
            out.print(f"[bold]{label}:[/] {escape(text)}")


def _read_prompts(path: Path) -> list[Any]:
    if not path.exists():
        raise UsageError(f"prompts file not found: {path}")
    prompts: list[Any] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                value = json.loads(line)["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UsageError(f"{path}:{lineno}: expected an object with a 'prompt' field",
                                 ["one JSON object per line: {\"prompt\": \"...\"}"]) from e
            prompts.append(value)
        else:
            prompts.append(line)
    return prompts


def chat_cmd(
    source: Annotated[str, typer.Argument(help="A run directory or model.")],
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    temperature: Temperature = 0.7,
    top_p: TopP = 1.0,
    max_new_tokens: MaxNew = 256,
    checkpoint: Checkpoint = None,
    seed: Seed = None,
) -> None:
    """Talk to a model in the terminal: /reset starts over, /exit (or Ctrl-D) leaves."""
    sampler = _sampler(source, temperature, top_p, max_new_tokens, checkpoint, seed)
    start = [{"role": "system", "content": system}] if system else []
    messages: list[dict[str, str]] = list(start)
    out.print(f"chatting with {escape(source)}; /reset starts over, /exit leaves")
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            messages = list(start)
            out.print("(conversation reset)")
            continue
        messages.append({"role": "user", "content": text})
        reply = sampler.complete(messages)
        messages.append({"role": "assistant", "content": reply})
        out.print(f"[bold]assistant>[/] {escape(reply)}")
