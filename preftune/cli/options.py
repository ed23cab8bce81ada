"""Command-line flags generated from a config's fields, so that every command that builds a
config (``train``, ``sweep``, ``pipeline``, ``rl train``; ``serve`` and ``worker`` from the
service config's sections) offers every option under its own name, with the field's own help,
and reads it through the same machinery as YAML and ``key=value``.

A command declares only its own parameters plus ``flags: dict[str, Any]``; ``@config_flags``
adds ``--<field>`` for every field of the model (``--learning-rate`` for learning_rate) and
hands the command the flags that were given (name -> value), for
``preftune.config.as_overrides`` and the config's override parser."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer
from pydantic import BaseModel


def _flag_type(annotation: Any) -> type:
    """bool, int and float flags keep their type (click checks them); everything else (text,
    choices, lists, unions) is taken as text for the config to parse."""
    args = set(typing.get_args(annotation)) if isinstance(
        annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union \
        else {annotation}
    args.discard(type(None))
    if len(args) == 1:
        (only,) = args
        if only in (bool, int, float):
            return only
    return str


def config_flags(*models: type[BaseModel], skip: Iterable[str] = ()) -> Callable[
        [Callable[..., Any]], Callable[..., Any]]:
    """Give the decorated command a ``--<field>`` flag for every field of ``models`` but
    ``skip``; the command receives the given ones as ``flags`` (name -> value).

    Several models (the sections of the service config) share one flat set of flags, each
    model's under its own heading in ``--help``; a field name two of them have is an error.
    """
    fields: dict[str, tuple[Any, str | None]] = {}
    for model in models:
        for name, info in model.model_fields.items():
            if name in set(skip):
                continue
            if name in fields:
                raise TypeError(f"config_flags: --{name.replace('_', '-')} would be a flag of "
                                f"two models; skip one of them")
            fields[name] = (info, model.__name__ if len(models) > 1 else None)

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "flags"]
        taken = {p.name for p in own}
        names = [n for n in fields if n not in taken]
        extra = []
        for name in names:
            info, panel = fields[name]
            kind = _flag_type(info.annotation)
            default = info.get_default(call_default_factory=True)
            help_text = f"{info.description or ''} (default: {default!r})".strip()
            extra.append(inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[kind | None, typer.Option(
                    help=help_text, show_default=False, rich_help_panel=panel)]))

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in names}
            return command(**kwargs, flags={k: v for k, v in given.items() if v is not None})

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
            else p for p in own] + extra
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return wrap
