"""Merge models: a LoRA adapter into its base, or several models into one, weighted.

Every merge writes a plain model directory (safetensors weights, config, tokenizer) that
``AutoModelForCausalLM.from_pretrained`` loads with no peft. Arithmetic is done in float32;
the result is saved in the dtype the (first) base model was stored in.

A source is a run directory (its ``final/``, or a checkpoint named in ``checkpoints.jsonl``),
an adapter directory (``adapter_config.json``), or a full model in any form
``resolve_model`` takes.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from preftune.config import read_yaml
from preftune.errors import ConfigError, UsageError
from preftune.fsutil import atomic_dir
from preftune.models.load import load_model, load_tokenizer, resolve_model
from preftune.models.locate import Located, locate
from preftune.rundir import is_run_dir

Strategy = Literal["linear", "ties", "dare_linear", "dare_ties", "cat"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# peft builds the merged adapter at the rank the inputs share; only "cat" stacks them.
_EQUAL_RANKS = ("linear", "ties", "dare_linear", "dare_ties")
# TIES averages the entries that agree in sign, so its weights need not sum to 1.
_WEIGHTS_SUM = ("linear", "dare_linear", "cat")
_DARE_SEED = 0


class MergeWarning(UserWarning):
    """A merge that runs but may not be what was meant (weights that do not sum to 1)."""


def merged_model(source: Located) -> Any:
    """The base model of adapter ``source`` with the adapter folded into its weights."""
    from peft import PeftModel

    if source.base is None:
        raise _nothing_to_merge(source.model_dir)
    peft_model = PeftModel.from_pretrained(_load_fp32(source.base), source.model_dir)
    return _as_stored_dtype(peft_model.merge_and_unload(), source.base)


def write_model(model: Any, tokenizer: Any, directory: Path) -> None:
    """Save ``model`` (safetensors) and ``tokenizer`` into an existing ``directory``."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def check_output(output: Path, sources: Sequence[Located]) -> None:
    """Refuse an output directory whose replacement would destroy something else: a source,
    a run directory, or a directory that holds anything but a model."""
    target = output.resolve()
    for source in sources:
        path = Path(source.model_dir)
        if path.exists() and (target == path.resolve() or target in path.resolve().parents):
            raise UsageError(f"output {output} would replace the model being read ({path})",
                             ["write to a new directory"])
    if not output.exists():
        return
    if not output.is_dir():
        raise UsageError(f"output {output} exists and is not a directory",
                         ["choose a directory path for --output"])
    if is_run_dir(output):
        raise UsageError(f"output {output} is a run directory; it would be replaced",
                         ["write to a new directory"])
    holds_model = any((output / name).exists()
                      for name in ("config.json", "adapter_config.json"))
    if any(output.iterdir()) and not holds_model:
        raise UsageError(f"output {output} exists and holds files that are not a model; "
                         "it would be replaced", ["choose a new directory, or empty this one"])


def merge_adapter(source: str | Path, output: str | Path,
                  checkpoint: str | None = None) -> Path:
    """Fold a LoRA adapter into its base; write a plain model directory to ``output``.

    ``source`` is a run directory (its ``final/``, or ``checkpoint`` by its name in
    ``checkpoints.jsonl``) or an adapter directory. A run's base is its config's model; an
    adapter directory's is ``base_model_name_or_path``. The write is atomic. A full model
    has nothing to merge: ``UsageError`` (export copies it instead).
    """
    output = Path(output)
    model_source = locate(source, checkpoint)
    if model_source.base is None:
        raise _nothing_to_merge(model_source.model_dir)
    check_output(output, [model_source])
    model = merged_model(model_source)
    with atomic_dir(output) as tmp:
        write_model(model, load_tokenizer(model_source.tokenizer_dir), tmp)
    return output


def weighted_merge(models: Sequence[tuple[str, float]], strategy: str, output: str | Path,
                   density: float = 0.5) -> Path:
    """Merge two or more models, weighted, into one plain model directory at ``output``.

    Weights are used as given, never normalised, so that an extrapolation such as
    (1.5, -0.5) stays possible; a ``MergeWarning`` says when they do not sum to 1 (except for
    ties and dare_ties, which average the entries that agree in sign).

    Full models (one architecture, equal shapes) merge only by ``linear``: every parameter
    becomes sum_i w_i * theta_i. Adapters on one base merge with peft's
    ``add_weighted_adapter`` and are then folded into the base:

    - ``cat`` stacks the adapters (rank = sum of ranks) and is exact:
      delta W = sum_i w_i * scale_i * B_i A_i.
    - ``linear``, ``ties``, ``dare_linear``, ``dare_ties`` need equal ranks and combine the A
      and B factors separately (each scaled by sqrt(w_i * scale_i)), so delta W also holds
      cross terms B_i A_j: an approximation of the weighted sum. ``density`` is the share of
      entries TIES keeps (by magnitude) and DARE keeps (at random, with a fixed seed).
    """
    if len(models) < 2:
        raise UsageError(f"a weighted merge needs two or more models, got {len(models)}",
                         ["to fold one adapter into its base: preftune merge RUN_DIR --output "
                          "DIR"])
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown merge strategy {strategy!r}",
                         [f"choose one of {', '.join(STRATEGIES)}"])
    if not 0 < density <= 1:
        raise UsageError(f"density {density!r} is out of range: it must be in (0, 1]",
                         ["density is the share of entries kept, e.g. 0.5"])
    output = Path(output)
    weights = [float(weight) for _, weight in models]
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise UsageError(f"merge weight {bad[0]!r} is not a finite number")
    sources = [locate(path) for path, _ in models]
    _check_one_kind(sources)
    if not sources[0].is_adapter and strategy != "linear":
        raise UsageError(f"strategy {strategy!r} merges LoRA adapters; full models merge only "
                         "with 'linear'", ["use --strategy linear"])
    check_output(output, sources)
    if strategy in _WEIGHTS_SUM and not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        warnings.warn(f"merge weights sum to {sum(weights):g}, not 1: they are used as given, "
                      "so the merged weights are scaled by that sum", MergeWarning, stacklevel=2)
    if sources[0].is_adapter:
        model = _merge_adapters(sources, weights, strategy, density)
    else:
        model = _merge_full(sources, weights)
    with atomic_dir(output) as tmp:
        write_model(model, load_tokenizer(sources[0].tokenizer_dir), tmp)
    return output


# ---------------------------------------------------------------------------------- config


class MergeModel(BaseModel):
    """One entry of ``models``: a model and its weight."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="A run directory, adapter directory or model.")
    weight: FiniteFloat = Field(description="Its weight, used as given.")


class MergeConfig(BaseModel):
    """A weighted merge as a YAML file describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Field(description="linear, ties, dare_linear, dare_ties or cat.")
    models: list[MergeModel] = Field(min_length=2, description="The models and weights.")
    output_path: str = Field(description="The directory to write.")
    density: float = Field(0.5, gt=0.0, le=1.0, description="Share of entries TIES/DARE keep.")

    @classmethod
    def build(cls, values: Mapping[str, Any], where: str = "merge config") -> MergeConfig:
        """Validate ``values``; on failure raise ``ConfigError`` quoting each bad value."""
        try:
            return cls(**values)
        except ValidationError as e:
            lines = [_describe(err) for err in e.errors()]
            raise ConfigError(f"{where}: {lines[0]}", [
                f"strategies: {', '.join(STRATEGIES)}; models: a list of {{path, weight}}",
            ], lines[1:]) from None


def load_merge_config(path: str | Path,
                      overrides: Mapping[str, Any] | None = None) -> MergeConfig:
    """A ``MergeConfig`` from YAML (``strategy``, ``models: [{path, weight}]``,
    ``output_path``, optional ``density``); ``overrides`` win over the file. Paths are used
    as written, so relative ones are relative to the working directory."""
    return MergeConfig.build({**read_yaml(path), **(overrides or {})}, where=str(path))


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "missing":
        return f"{loc} is missing"
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r}"
    return f"{loc}={err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}"


# --------------------------------------------------------------------------------- helpers


def _nothing_to_merge(path: str) -> UsageError:
    return UsageError(f"nothing to merge: {path} holds a full model, not a LoRA adapter",
                      ["to copy it with a model card: preftune export RUN_DIR --output DIR"])


def _check_one_kind(sources: Sequence[Located]) -> None:
    adapters = [s.model_dir for s in sources if s.is_adapter]
    full = [s.model_dir for s in sources if not s.is_adapter]
    if adapters and full:
        raise UsageError("cannot merge LoRA adapters with full models: "
                         f"adapters {', '.join(adapters)}; full models {', '.join(full)}",
                         ["fold each adapter into its base first (preftune merge RUN_DIR "
                          "--output DIR), then merge the full models with --strategy linear"])


def _load_fp32(name: str) -> Any:
    return load_model(name, "fp32").eval()


def _as_stored_dtype(model: Any, name: str) -> Any:
    """``model`` cast to the dtype ``name``'s weights are stored in (a bf16 base stays bf16)."""
    import torch
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(resolve_model(name)), "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point and dtype != torch.float32:
        model = model.to(dtype)
    return model


def _merge_full(sources: Sequence[Located], weights: Sequence[float]) -> Any:
    """sum_i w_i * theta_i over every parameter, holding one extra model at a time."""
    import torch

    merged = _load_fp32(sources[0].model_dir)
    # named_parameters lists a tied weight once, so it is scaled once.
    params = dict(merged.named_parameters())
    with torch.no_grad():
        for param in params.values():
            param.mul_(weights[0])
        for source, weight in zip(sources[1:], weights[1:], strict=True):
            other = _load_fp32(source.model_dir)
            _check_same_shapes(sources[0].model_dir, merged, source.model_dir, other)
            for name, param in other.named_parameters():
                params[name].add_(param, alpha=weight)
            del other
    return _as_stored_dtype(merged, sources[0].model_dir)


def _check_same_shapes(name_a: str, a: Any, name_b: str, b: Any) -> None:
    if a.config.model_type != b.config.model_type:
        raise _mismatch(f"{name_a} is a {a.config.model_type} model, {name_b} a "
                        f"{b.config.model_type} model")
    shapes_a = {k: tuple(p.shape) for k, p in a.named_parameters()}
    shapes_b = {k: tuple(p.shape) for k, p in b.named_parameters()}
    for key in sorted(shapes_a.keys() | shapes_b.keys()):
        if key not in shapes_b:
            raise _mismatch(f"{key} is in {name_a} but not in {name_b}")
        if key not in shapes_a:
            raise _mismatch(f"{key} is in {name_b} but not in {name_a}")
        if shapes_a[key] != shapes_b[key]:
            raise _mismatch(f"{key} has shape {shapes_a[key]} in {name_a} but "
                            f"{shapes_b[key]} in {name_b}")


def _mismatch(detail: str) -> UsageError:
    return UsageError(f"models differ in architecture: {detail}",
                      ["a linear merge needs models of one architecture and size, e.g. "
                       "fine-tunes of one base model"])


def _merge_adapters(sources: Sequence[Located], weights: Sequence[float], strategy: str,
                    density: float) -> Any:
    """Adapters combined by peft's ``add_weighted_adapter``, folded into their base."""
    import torch
    from peft import PeftModel

    _check_one_base(sources)
    if strategy in _EQUAL_RANKS:
        ranks = {s.model_dir: _adapter_rank(Path(s.model_dir)) for s in sources}
        if len(set(ranks.values())) > 1:
            listed = ", ".join(f"{path} (r={r})" for path, r in ranks.items())
            raise UsageError(f"strategy {strategy!r} needs adapters of equal rank: {listed}",
                             ["use --strategy cat: it stacks adapters of any ranks, exactly"])
    names = [f"adapter_{i}" for i in range(len(sources))]
    base = sources[0].base
    assert base is not None  # _check_one_kind: every source is an adapter
    model = PeftModel.from_pretrained(_load_fp32(base), sources[0].model_dir, adapter_name=names[0])
    for name, source in zip(names[1:], sources[1:], strict=True):
        model.load_adapter(source.model_dir, adapter_name=name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_DARE_SEED)  # DARE drops entries at random: same inputs, same merge
        try:
            model.add_weighted_adapter(names, list(weights), "merged", combination_type=strategy,
                                       density=None if strategy in ("linear", "cat")
                                       else density)
        except ValueError as e:
            raise UsageError(f"peft cannot merge these adapters with {strategy!r}: {e}") from e
    return _as_stored_dtype(model.merge_and_unload(adapter_names=["merged"]), base)


def _check_one_base(sources: Sequence[Located]) -> None:
    if len({_base_key(str(s.base)) for s in sources}) > 1:
        listed = "; ".join(f"{s.model_dir} on {s.base}" for s in sources)
        raise UsageError(f"the adapters apply to different base models: {listed}",
                         ["merge only adapters trained on one base model"])


def _base_key(name: str) -> str:
    """One spelling per base model: an alias, ``tiny`` and a path all become a full path."""
    resolved = resolve_model(name)
    path = Path(resolved)
    return str(path.resolve()) if path.exists() else resolved


def _adapter_rank(directory: Path) -> int:
    config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    return max([int(config["r"]), *(int(r) for r in (config.get("rank_pattern") or {}).values())])
