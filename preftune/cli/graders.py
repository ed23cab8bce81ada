"""``preftune graders validate|run``: check an OpenAI grader and try it on a sample, locally.

No server is involved: the grader runs here as a job's grader would (python graders in their
limited child process). A malformed grader is exit 2 with one ``error:`` line naming the field;
a grader that cannot score the sample (a missing item field, a python error) prints its errors
with reward 0 and exits 0, as the API answers 200.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preftune import settings
from preftune.cli.common import out
from preftune.errors import GraderError, UsageError
from preftune.graders import (
    EmbeddingEndpoint,
    Grader,
    GraderSettings,
    ModelEndpoint,
    check_item,
    grade,
    validate,
)

app = typer.Typer(help="Check OpenAI graders and try them on a sample, locally.",
                  no_args_is_help=True)

GraderFile = Annotated[Path, typer.Argument(help="The grader as JSON: an object with a type "
                                            "(string_check, text_similarity, score_model, "
                                            "multi, python). See docs/graders.md.")]


@app.command("validate")
def validate_cmd(path: GraderFile) -> None:
    """Check a grader: every field, template, formula and python source."""
    grader = load_grader(path)
    fields = check_item(grader, {})  # every item field it reads: the empty item lacks each
    out.print(f"ok: {grader.type} grader {escape(repr(grader.name))}"
              + (f"; reads {escape(', '.join(fields))}" if fields else ""))


@app.command("run")
def run_cmd(
    path: GraderFile,
    sample: Annotated[str | None, typer.Option(help="The model's answer "
                                               "({{sample.output_text}}).")] = None,
    sample_file: Annotated[Path | None, typer.Option(help="Read the answer from a file "
                                                     "instead.")] = None,
    item: Annotated[str | None, typer.Option(help="The dataset row, as a JSON object "
                                             "({{item.*}}).")] = None,
    item_file: Annotated[Path | None, typer.Option(help="Read the row from a JSON file "
                                                   "instead.")] = None,
    score_model_base_url: Annotated[str | None, typer.Option(
        help="The OpenAI-compatible endpoint (.../v1) score_model graders call "
        "(bearer key: PREFTUNE_SCORE_MODEL_API_KEY).")] = None,
    embedding_base_url: Annotated[str | None, typer.Option(
        help="The OpenAI-compatible endpoint (.../v1, serving /embeddings) cosine "
        "text_similarity graders call (bearer key: PREFTUNE_EMBEDDING_API_KEY).")] = None,
    embedding_model: Annotated[str | None, typer.Option(
        help="The embedding model to ask --embedding-base-url for.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as the API's "
                                          "/v1/fine_tuning/alpha/graders/run answers "
                                          "it.")] = False,
) -> None:
    """Grade one sample: the reward, each sub-grader's score, and what went wrong."""
    grader = load_grader(path)
    text = _one("--sample", sample, "--sample-file", sample_file)
    row = _row(_one("--item", item, "--item-file", item_file, required=False),
               "--item-file" if item_file else "--item")
    if bool(embedding_base_url) != bool(embedding_model):
        raise UsageError("give --embedding-base-url and --embedding-model together")
    endpoint = (ModelEndpoint(score_model_base_url, settings.score_model_api_key())
                if score_model_base_url else None)
    embedder = (EmbeddingEndpoint(embedding_base_url, embedding_model,
                                  settings.embedding_api_key())
                if embedding_base_url and embedding_model else None)
    result = grade(grader, {"output_text": text}, row,
                   GraderSettings(score_model_endpoint=endpoint, embedder=embedder),
                   on_error="zero")
    if as_json:
        from preftune.service.routes.graders import run_result

        out.print_json(run_result(grader, result).model_dump_json())
        return
    out.print(f"reward {result.score:g}  ({result.type} grader {escape(repr(result.name))}, "
              f"{result.execution_time_s:.3f} s)")
    width = max((len(name) for name in result.sub_scores), default=0)
    for name, score in result.sub_scores.items():
        out.print(f"  {escape(name.ljust(width))}  {score:g}")
    for message in result.errors:
        out.print(f"[red]grader error:[/] {escape(message)}")


def load_grader(path: Path) -> Grader:
    """The grader in a JSON file; GraderError (exit 2) naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read the grader {path}: {e.strerror}",
                         ["give the path of a JSON file holding one grader object"]) from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise GraderError(f"{path}: not valid JSON: {e}") from None
    try:
        return validate(data)
    except GraderError as e:
        raise GraderError(f"{path}: {e.message}", list(e.hints), details=e.details) from None


def _one(flag: str, value: str | None, file_flag: str, file: Path | None,
         required: bool = True) -> str | None:
    """The text given inline or by file; a usage error for both, or (required) neither."""
    if value is not None and file is not None:
        raise UsageError(f"give {flag} or {file_flag}, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {file_flag} {file}: {e.strerror}") from None
    if value is None and required:
        raise UsageError(f"give the model's answer with {flag} TEXT or {file_flag} PATH")
    return value


def _row(text: str | None, flag: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        row = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{flag}: not valid JSON: {e}",
                         ['e.g. --item \'{"answer": "42"}\'']) from None
    if not isinstance(row, dict):
        raise UsageError(f"{flag}: expected a JSON object (a dataset row), got "
                         f"{type(row).__name__}", ['e.g. --item \'{"answer": "42"}\''])
    return row
