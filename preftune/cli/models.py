"""``preftune models import``: model files into directories ``from_pretrained`` reads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from preftune.cli.common import out

app = typer.Typer(help="Bring models from other formats (GGUF).", no_args_is_help=True)


@app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(metavar="FILE.gguf", show_default=False,
                                           help="A GGUF file, or a directory holding one.")],
    output: Annotated[Path, typer.Option("--output", "-o", show_default=False,
                                         help="The directory to write (missing or empty).")],
) -> None:
    """Dequantize a GGUF file into a save_pretrained directory.

    Writes float32 weights, the config, the tokenizer and its chat template. Training with
    --model FILE.gguf does the same by itself, once, into the cache.
    """
    from preftune.models.gguf import import_gguf

    started = time.perf_counter()
    written = import_gguf(source, output)
    seconds = time.perf_counter() - started
    out.print(f"wrote {escape(str(written))} from {escape(str(source))} in {seconds:.0f}s")
    out.print(f"train it with --model {escape(str(written))}, or load it with "
              "AutoModelForCausalLM.from_pretrained")
