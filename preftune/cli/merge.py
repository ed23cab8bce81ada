"""``preftune merge`` and ``preftune export``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preftune.cli.common import err, out
from preftune.errors import UsageError
from preftune.models.merge import STRATEGIES, MergeWarning


def register(app: typer.Typer) -> None:
    app.command("merge")(merge_cmd)
    app.command("export")(export_cmd)


def merge_cmd(
    run_dir: Annotated[Path | None, typer.Argument(
        metavar="RUN_DIR", show_default=False, help="A run directory (or adapter directory) "
        "whose LoRA adapter to fold into its base.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The model directory "
                                                "to write.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Merge this checkpoint of RUN_DIR "
                                                   "(a name in checkpoints.jsonl) instead of "
                                                   "final/.")] = None,
    models: Annotated[list[str] | None, typer.Option(
        "--models", "-m", help="A model to merge as PATH:WEIGHT; give two or more.")] = None,
    strategy: Annotated[str | None, typer.Option(help=f"{', '.join(STRATEGIES)} (full "
                                                 "models: linear only).")] = None,
    density: Annotated[float | None, typer.Option(help="Share of entries ties/dare keep "
                                                  "(default 0.5).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="A YAML file: "
                                                "strategy, models [{path, weight}], "
                                                "output_path, density.")] = None,
) -> None:
    """Fold a run's LoRA adapter into its base model, or merge several models, weighted."""
    if run_dir is not None:
        if models or config or strategy or density is not None:
            raise UsageError("give either RUN_DIR (fold its adapter into the base) or "
                             "--models/--config (a weighted merge), not both")
        if output is None:
            raise UsageError("--output is required", ["preftune merge RUN_DIR --output DIR"])
        from preftune.models.merge import merge_adapter

        written = merge_adapter(run_dir, output, checkpoint=checkpoint)
        what = f"checkpoint {checkpoint} of {run_dir}" if checkpoint else str(run_dir)
        out.print(f"merged the adapter of {escape(what)} into its base model")
        _print_written(written)
        return
    if checkpoint is not None:
        raise UsageError("--checkpoint applies to RUN_DIR; a weighted merge takes the models' "
                         "paths", ["preftune merge RUN_DIR --checkpoint NAME --output DIR"])
    if not models and config is None:
        raise UsageError("nothing to merge", [
            "fold an adapter into its base: preftune merge RUN_DIR --output DIR",
            "merge models: preftune merge --models a:0.5 --models b:0.5 --strategy linear "
            "--output DIR",
            "or from a file: preftune merge --config merge.yaml"])
    from preftune.models.merge import MergeConfig, load_merge_config, weighted_merge

    flags: dict[str, Any] = {"strategy": strategy, "density": density,
                             "output_path": str(output) if output is not None else None,
                             "models": [parse_model_weight(m) for m in models or []] or None}
    overrides = {key: value for key, value in flags.items() if value is not None}
    cfg = (load_merge_config(config, overrides) if config is not None
           else MergeConfig.build(overrides, where="command line"))
    written = _with_warnings(lambda: weighted_merge(
        [(m.path, m.weight) for m in cfg.models], cfg.strategy, Path(cfg.output_path),
        cfg.density))
    listed = ", ".join(f"{m.path} ({m.weight:g})" for m in cfg.models)
    out.print(f"merged {escape(listed)} ({cfg.strategy})")
    _print_written(written)


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", show_default=False,
                                            help="The run directory to export.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The directory to write.")],
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="Fold a LoRA adapter into "
                                        "the base model (--no-merge: export the adapter).")]
    = True,
    push_to_hub: Annotated[str | None, typer.Option(help="Upload to this hub repository "
                                                    "(owner/name).")] = None,
) -> None:
    """Export a run's final model with its tokenizer and a model card (README.md)."""
    from preftune.models.export import export_run

    written = export_run(run_dir, output, merge=merge, push_to_hub=push_to_hub)
    _print_written(written)
    if push_to_hub:
        out.print(f"pushed to https://huggingface.co/{escape(push_to_hub)}")


def parse_model_weight(item: str) -> dict[str, Any]:
    """``"runs/a:0.6"`` → ``{"path": "runs/a", "weight": 0.6}``; the path may hold ':'."""
    path, sep, raw = item.rpartition(":")
    try:
        weight = float(raw)
    except ValueError:
        weight = math.nan
    if not sep or not path or not math.isfinite(weight):
        raise UsageError(f"cannot read --models {item!r}: expected PATH:WEIGHT, a finite "
                         "number after the last ':'", ["for example: --models runs/a:0.6"])
    return {"path": path, "weight": weight}


def _with_warnings(merge: Callable[[], Path]) -> Path:
    """Run ``merge``, printing its MergeWarnings as ``warning:`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=MergeWarning)
        written = merge()
    for w in caught:
        if issubclass(w.category, MergeWarning):
            err.print(f"[yellow]warning:[/] {escape(str(w.message))}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return written


def _print_written(directory: Path) -> None:
    out.print(f"wrote {escape(str(directory))}:")
    for path in sorted(directory.iterdir()):
        out.print(f"  {escape(path.name)}  {_size(path.stat().st_size)}")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
