"""``TrainConfig``: every training option, validated up front, from YAML, flags or key=value.

Values are layered, later layers winning: field defaults → the algorithm's recommended
defaults (SimPO) → the preset → the values given (YAML, then flags and ``key=value``).
Names people bring from other tools (``model_name``, ``dpo_beta``, ``num_train_epochs``,
``per_device_train_batch_size``, ``log_path``, ...) are accepted as aliases.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from preftune.errors import ConfigError
from preftune.losses.table import ALGORITHMS, data_kind, describe, hyperparameters, resolve
from preftune.losses.types import LossParams

PRESETS: dict[str, dict[str, Any]] = {
    "balanced": {
        "description": "Recommended: good accuracy with stability (the default).",
        "risks": "None: this is the recommended configuration.",
        "values": {"beta": 0.1, "learning_rate": 5e-5, "epochs": 3, "grad_accum": 8,
                   "warmup_steps": 5},
    },
    "aggressive": {
        "description": "Push for maximum preference accuracy.",
        "risks": "Might overfit; training can become unstable.",
        "values": {"beta": 0.2, "learning_rate": 1e-4, "epochs": 5, "grad_accum": 8,
                   "warmup_steps": 10},
    },
    "conservative": {
        "description": "Prioritise training stability.",
        "risks": "Slower convergence, lower final accuracy.",
        "values": {"beta": 0.05, "learning_rate": 2e-5, "epochs": 5, "grad_accum": 8,
                   "warmup_steps": 20},
    },
    "quantization": {
        "description": "Tuned for the noise of 4-bit quantized training.",
        "risks": "Moderate: balanced for quantization artifacts.",
        "values": {"beta": 0.1, "learning_rate": 3e-5, "epochs": 4, "grad_accum": 8,
                   "warmup_steps": 10},
    },
    "quick": {
        "description": "Fast training for quick tests and prototyping.",
        "risks": "High: likely underfits, but fast.",
        "values": {"beta": 0.1, "learning_rate": 1e-4, "epochs": 1, "grad_accum": 4,
                   "warmup_steps": 2},
    },
}
DEFAULT_PRESET = "balanced"

# Recommended defaults of algorithms whose scale differs from DPO's (the algorithm table's).
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {n: dict(a.defaults) for n, a in ALGORITHMS.items()
                                            if a.defaults}

ALIASES: dict[str, str] = {
    "model_name": "model",
    "model_name_or_path": "model",
    "dpo_beta": "beta",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "log_path": "output_dir",
    "dataset_chosen_field": "chosen_field",
    "dataset_rejected_field": "rejected_field",
    "dataset_prompt_field": "prompt_field",
    "dataset_completion_field": "completion_field",
    "dataset_label_field": "label_field",
    "loss_type": "algo",
    "algorithm": "algo",
    "f_divergence_type": "f_divergence",
    "f_alpha_divergence_coef": "f_alpha",
    "lr": "learning_rate",
    "max_seq_length": "max_length",
    "lora_r": "lora_rank",
    "warmup": "warmup_steps",
    "train_file": "dataset",
    "eval_file": "eval_dataset",
    "precompute_ref_log_probs": "precompute_ref_logprobs",
    "padding_free": "pack_pairs",
}


def _tracker_names(value: Any) -> Any:
    """Accept "none", "wandb,mlflow" and lists holding "none"."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if isinstance(value, list):
        return [v for v in value if v not in ("none", "", None)]
    return value


# ``report_to`` of a training run or a GRPO run: the trackers that get its metrics.
TrackerNames = Annotated[list[Literal["wandb", "tensorboard", "mlflow"]],
                         BeforeValidator(_tracker_names)]


class TrainConfig(BaseModel):
    """Every option of a training run. Unknown names and out-of-range values are errors.

    A config is immutable: presets and algorithm defaults are resolved when it is built, so
    derive a changed one with ``TrainConfig.build({**cfg.model_dump(), "beta": 0.2})``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What to train on
    model: str = Field("tiny", description="Model: a local directory, a hub id, an alias or "
                       "'tiny' (the embedded model).")
    dataset: str | None = Field(None, description="Training data: a file, a save_to_disk "
                                "directory or hf:NAME[:CONFIG][@SPLIT].")
    eval_dataset: str | None = Field(None, description="Evaluation data, same forms as "
                                     "dataset.")
    eval_split: float = Field(0.0, ge=0.0, lt=1.0, description="Share of the training pairs "
                              "held out for evaluation when no eval_dataset is given.")
    dataset_format: str | None = Field(None, description="Force a data format instead of "
                                       "detecting it.")
    prompt_field: str = Field("prompt", description="Prompt column of flat data.")
    chosen_field: str = Field("chosen", description="Chosen-response column of flat data.")
    rejected_field: str = Field("rejected", description="Rejected-response column of flat "
                                "data.")
    completion_field: str = Field("completion", description="Completion column of unpaired "
                                  "data (kto).")
    label_field: str = Field("label", description="Label column of unpaired data: true for a "
                             "desirable completion.")
    normalize: list[Literal["nfkc", "arabic"]] = Field(
        default_factory=list, description="Text normalisation applied to the data: nfkc, "
        "arabic.")
    n_examples: int | None = Field(None, ge=1, description="Use only the first N training "
                                   "pairs.")

    # The objective
    algo: str | list[str] = Field(
        "dpo", description="Training objective: one of " + ", ".join(ALGORITHMS) + " (TRL's "
        "names such as sigmoid are accepted), or a list trained together as a mixture "
        "(dpo,bco_pair,sft) weighted by loss_weights.")
    loss_weights: list[float] | None = Field(
        None, description="Weight of each algorithm of a mixture (default: 1 each).")
    preset: str | None = Field(None, description="Hyperparameters from the tuning guide: "
                               + ", ".join(PRESETS) + ".")
    beta: float = Field(0.1, gt=0.0, description="Strength of the preference (DPO beta; "
                        "lambda for ORPO).")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="Probability that a "
                                   "label is flipped (cdpo, robust).")
    gamma_beta_ratio: float = Field(0.5, ge=0.0, description="SimPO target margin over beta.")
    sft_weight: float = Field(0.0, ge=0.0, description="Weight of an NLL term on the chosen "
                              "response added to the preference loss.")
    f_divergence: Literal["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"] = \
        Field("reverse_kl", description="Divergence from the reference the reward "
              "regularises (f-DPO): reverse_kl is DPO's.")
    f_alpha: float = Field(0.5, gt=0.0, description="Alpha of f_divergence=alpha_divergence.")
    discopop_tau: float = Field(0.05, gt=0.0, description="DiscoPOP's blend temperature.")
    desirable_weight: float = Field(1.0, gt=0.0, description="KTO: weight of desirable "
                                    "examples.")
    undesirable_weight: float = Field(1.0, gt=0.0, description="KTO: weight of undesirable "
                                      "examples.")
    use_weighting: bool = Field(False, description="WPO: weight each pair's loss by the "
                                "policy's probability of its responses.")
    ld_alpha: float | None = Field(None, ge=0.0, le=1.0, description="LD-DPO: weight of "
                                   "response tokens past the shorter response's length (None "
                                   "or 1: plain log-probs).")

    # Optimisation
    learning_rate: float = Field(5e-5, gt=0.0, lt=1.0, description="Peak learning rate.")
    epochs: int = Field(3, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer "
                                  "steps.")
    batch_size: int = Field(1, ge=1, description="Pairs per forward pass (micro-batch).")
    grad_accum: int = Field(8, ge=1, description="Micro-batches per optimizer step, over all "
                            "processes together.")
    warmup_steps: int = Field(5, ge=0, description="Steps of linear warm-up.")
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate decay after warm-up.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    seed: int = Field(42, description="Random seed for data order and initialisation.")

    # Sequences
    max_length: int = Field(1024, ge=8, description="Longest prompt + response, in tokens.")
    max_prompt_length: int = Field(512, ge=1, description="Longest prompt, in tokens (the "
                                   "prompt keeps its end).")

    # Model and adapters
    lora: bool = Field(True, description="Train a LoRA adapter (false: full fine-tuning).")
    lora_rank: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    lora_target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Weights and "
                                                           "compute dtype.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    load_in_4bit: bool = Field(False, description="Load the base model in 4 bits "
                               "(bitsandbytes, CUDA only).")
    precompute_ref_logprobs: bool = Field(True, description="Compute reference log-probs "
                                          "once before training and cache them.")
    disable_dropout: bool = Field(True, description="Turn off every dropout (the model's and "
                                  "LoRA's) in policy and reference, as TRL does: the policy is "
                                  "compared with a reference scored without it.")
    router_aux_loss_coef: float | None = Field(
        None, ge=0.0, description="Mixture-of-experts models: weight of the router's "
        "load-balancing loss added to the preference loss (default: the model config's, when "
        "it sets output_router_logits, as TRL does; 0 turns it off).")

    # Speed (each switch has a parity test against the plain computation)
    shared_prompt: bool = Field(True, description="Read each prompt once: prompt + chosen + "
                                "rejected in one sequence, rejected unable to see chosen.")
    pack_pairs: bool = Field(True, description="Pack several pairs into one row instead of "
                             "padding each to the longest.")
    chunked_logps: bool = Field(True, description="Log-probs from hidden states at response "
                                "positions, a chunk at a time: no full-vocabulary logits.")
    logps_chunk_tokens: int | None = Field(
        None, ge=1, description="Tokens per chunk of chunked_logps (smaller: less memory, more "
        "steps). Default: by vocabulary, about 256 MB of float32 logits per chunk (2048 tokens "
        "for 32k, 1024 for 49k, 256 for 152k and 262k).")
    group_by_length: bool = Field(False, description="Batch pairs of similar length "
                                  "(changes which pairs share a step).")
    torch_compile: bool = Field(False, description="Compile the model with torch.compile.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flex_attention"] = Field(
        "auto", description="Attention kernel: auto is FlexAttention on CUDA for packed "
        "batches, SDPA otherwise, and the next one a model has where it lacks that one.")

    # Run directory and logging
    output_dir: str | None = Field(None, description="The run directory (default: "
                                   "experiments/<dataset>_<model>_lr<lr>_beta<beta>_<date>).")
    exp_name: str | None = Field(None, description="A name for the run.")
    logging_steps: int = Field(10, ge=1, description="Log metrics every N optimizer steps "
                               "(each row averages those steps).")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps (and at "
                                   "the end).")
    save_steps: int | None = Field(None, ge=1, description="Save a checkpoint every N steps "
                                   "(and at each epoch end).")
    save_total_limit: int | None = Field(None, ge=1, description="Keep at most N "
                                         "checkpoints.")
    report_to: TrackerNames = Field(
        default_factory=list, description="Trackers that get the metrics too: wandb, "
        "tensorboard, mlflow (none: only metrics.jsonl).")
    wandb_project: str | None = Field(None, description="Weights & Biases project.")
    wandb_name: str | None = Field(None, description="Weights & Biases run name (default: "
                                   "the run directory's name).")

    @field_validator("loss_weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        """Accept "0.8,0.2,1" as TRL's command line spells a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _layer(cls, data: Any) -> Any:
        """Resolve aliases, then fill the algorithm's and the preset's values where unset."""
        if not isinstance(data, dict):
            return data
        given = canonical_keys(data)
        if given.get("preset") is not None and given["preset"] not in PRESETS:
            raise ValueError(f"unknown preset {given['preset']!r}; choose one of "
                             + ", ".join(PRESETS))
        if "algo" in given:
            given["algo"] = normalize_algo(given["algo"])
        names = given.get("algo", "dpo")
        layered: dict[str, Any] = {}
        for name in reversed([names] if isinstance(names, str) else names):
            layered.update(ALGO_DEFAULTS.get(name, {}))  # the first algorithm's win
        if given.get("preset") is not None:
            layered.update(PRESETS[given["preset"]]["values"])
        layered.update(given)
        return layered

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be less than "
                             f"max_length ({self.max_length})")
        names = self.algorithms
        data_kind(names)  # a mixture trains on one kind of data
        if self.loss_weights is not None:
            if len(self.loss_weights) != len(names):
                raise ValueError(f"loss_weights has {len(self.loss_weights)} weights for "
                                 f"{len(names)} algorithms ({', '.join(names)})")
            if any(not w >= 0 for w in self.loss_weights):
                raise ValueError(f"loss_weights must be >= 0, got {self.loss_weights}")
        if "exo_pair" in names and self.label_smoothing <= 0:
            raise ValueError("exo_pair needs label_smoothing > 0 (its target distribution "
                             "takes the log of it); the paper uses 1e-3")
        if self.use_weighting and {"aot", "aot_unpaired"} & set(names):
            raise ValueError("use_weighting does not apply to aot and aot_unpaired, which "
                             "compare sorted log-ratios across the batch")
        if ALGORITHMS[names[0]].data == "unpaired" and self.ld_alpha not in (None, 1.0):
            raise ValueError("ld_alpha does not apply to unpaired data: it compares the "
                             "lengths of a pair's two responses")
        if self.f_divergence != "reverse_kl" and "f_divergence" not in hyperparameters(names):
            takers = [n for n, a in ALGORITHMS.items() if "f_divergence" in a.hyperparameters]
            raise ValueError(f"f_divergence={self.f_divergence} does not apply to "
                             f"{' + '.join(names)}: it changes the log-ratio score of "
                             + ", ".join(takers))
        if "kto" in names and self.batch_size < 2:
            raise ValueError("kto needs batch_size >= 2: its KL term is estimated from the "
                             "other examples of the batch")
        return self

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms trained: one, or the parts of a mixture."""
        return (self.algo,) if isinstance(self.algo, str) else tuple(self.algo)

    @property
    def scoring_algo(self) -> str:
        """The loss that scores preference pairs for this run's evaluation: the first of a
        mixture; DPO's log-ratio reward for an algorithm trained on unpaired data."""
        first = self.algorithms[0]
        return "dpo" if ALGORITHMS[first].data == "unpaired" else first

    def loss_params(self, **overrides: Any) -> LossParams:
        """The losses' hyperparameters from this config (``overrides`` replace fields)."""
        values = {name: getattr(self, name) for name in LossParams.__dataclass_fields__}
        return LossParams(**{**values, **overrides})

    @property
    def algo_label(self) -> str:
        """``dpo``, or a mixture as ``0.8 dpo + 0.2 bco_pair + 1 sft``."""
        return describe(self.algorithms, self.loss_weights)

    # ------------------------------------------------------------------------------ loading

    @classmethod
    def build(cls, values: dict[str, Any]) -> TrainConfig:
        """Validate ``values``; on failure raise ``ConfigError`` quoting each bad value."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise config_error(e, values) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str],
                  overrides: dict[str, Any] | None = None) -> TrainConfig:
        return cls.build({**read_yaml(path), **canonical_keys(overrides or {})})

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def normalize_algo(value: Any) -> Any:
    """``"sigmoid"`` → ``"dpo"``; ``"dpo,bco_pair"`` or ``["dpo", "bco_pair"]`` → a list of
    table names; a one-item list → its name. Unknown names raise, listing the table."""
    if isinstance(value, str):
        parts = [p for p in value.strip("[]").replace("+", ",").split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = [str(p) for p in value]
    else:
        return value
    names = []
    for part in parts:
        try:
            names.append(resolve(part))
        except KeyError:
            close = difflib.get_close_matches(part.strip().lower(), list(ALGORITHMS), n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"algo={part.strip()!r}: unknown algorithm{guess}; choose from "
                             + ", ".join(ALGORITHMS)) from None
    if not names:
        raise ValueError("algo is empty; choose from " + ", ".join(ALGORITHMS))
    if len(set(names)) != len(names):
        raise ValueError(f"algo lists an algorithm twice: {', '.join(names)}")
    return names[0] if len(names) == 1 else names


@dataclass(frozen=True)
class Schema:
    """A config class and the names people bring for its fields: what YAML files, key=value
    overrides, flags and error messages read, for training runs (``TRAIN``) and GRPO runs
    alike."""

    model: type[BaseModel]
    aliases: dict[str, str]
    show: str  # the command that lists every option

    def field(self, key: str) -> str:
        return self.aliases.get(key, key)


def _schema(schema: Schema | None) -> Schema:
    return schema or Schema(TrainConfig, ALIASES, "preftune config --show")


def canonical_keys(values: dict[str, Any], schema: Schema | None = None) -> dict[str, Any]:
    """Map alias names to field names; two names for one field with different values is an
    error."""
    schema = _schema(schema)
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in values.items():
        name = schema.field(key)
        if name in out and out[name] != value:
            raise ConfigError(f"{origin[name]}={out[name]!r} and {key}={value!r} set the same "
                              f"option '{name}'", ["give it once"])
        out[name] = value
        origin[name] = key
    return out


def read_yaml(path: str | os.PathLike[str], schema: Schema | None = None) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}",
                          ["check the path given to --config"]) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', e)}",
                          ["fix the YAML syntax"]) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, found "
                          f"{type(data).__name__}", ["write one option per line: beta: 0.1"])
    return canonical_keys(data, schema)


def parse_overrides(items: list[str], schema: Schema | None = None) -> dict[str, Any]:
    """``["beta=0.2", "lora_target_modules=q_proj,v_proj"]`` → typed values via the fields."""
    schema = _schema(schema)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("--").replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"cannot read override {item!r}: expected key=value",
                              ["for example: beta=0.2 learning_rate=1e-5"])
        name = schema.field(key)
        if name not in schema.model.model_fields:
            raise unknown_option(key, schema)
        out[key] = _coerce(str(schema.model.model_fields[name].annotation), raw.strip())
    return canonical_keys(out, schema)


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Typed values (a command's flags) as the ``key=value`` items ``parse_overrides`` reads,
    so that flags and overrides go through one parser."""
    return [f"{name}={str(value).lower() if isinstance(value, bool) else value}"
            for name, value in values.items()]


def _coerce(annotation: str, raw: str) -> Any:
    """Turn override text into the value the field wants; pydantic then checks it."""
    if raw.lower() in ("none", "null", "~"):
        return None
    if "list" in annotation:
        if raw == "all-linear":
            return raw
        return [part.strip() for part in raw.strip("[]").split(",") if part.strip()]
    return raw


def unknown_option(key: str, schema: Schema | None = None) -> ConfigError:
    schema = _schema(schema)
    known = list(schema.model.model_fields) + list(schema.aliases)
    close = difflib.get_close_matches(key, known, n=3)
    hints = [f"did you mean {', '.join(close)}?"] if close else []
    hints.append(f"list every option with: {schema.show}")
    return ConfigError(f"unknown option '{key}'", hints)


def config_error(error: ValidationError, values: dict[str, Any],
                 schema: Schema | None = None) -> ConfigError:
    schema = _schema(schema)
    lines = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, list(schema.model.model_fields), n=1)
            lines.append(f"unknown option '{loc}'" + (f" (did you mean '{close[0]}'?)"
                                                       if close else ""))
        elif loc:
            lines.append(f"{loc}={err.get('input')!r}: {message}")
        else:
            lines.append(message)
    first, rest = lines[0], lines[1:]
    return ConfigError(f"invalid configuration: {first}", [
        f"list the options and their defaults with: {schema.show}"], rest)
