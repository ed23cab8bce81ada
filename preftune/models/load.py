"""Load tokenizers (and, with the training engine, models) by name or path."""

from __future__ import annotations

from typing import Any

from preftune.errors import MissingError


def load_tokenizer(name: str) -> Any:
    """A tokenizer from a local directory or a hub id (downloaded where the network allows)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise MissingError(
            f"cannot load a tokenizer from {name!r}: {str(e).splitlines()[0]}",
            ["pass a local directory holding tokenizer files (tokenizer.json, "
             "tokenizer_config.json)", "or a hub id, where this machine can reach the hub"],
        ) from e
