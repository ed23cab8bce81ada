"""Export a run's final model as a directory to share: weights, tokenizer and a model card.

The card (README.md, with the hub's YAML front matter) is built from the run directory alone:
config.json gives the base model, data, hyperparameters and library versions; metrics.jsonl
the last training and evaluation rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

import yaml

from preftune.errors import MissingError, UsageError
from preftune.fsutil import atomic_dir
from preftune.losses.table import ALGORITHMS, describe, hyperparameters
from preftune.models.load import load_tokenizer, resolve_model
from preftune.models.locate import locate
from preftune.models.merge import check_output, merged_model, write_model
from preftune.rundir import RunDir, is_run_dir

Kind = Literal["merged", "adapter", "full"]
_HYPERPARAMETERS = ("learning_rate", "lr_scheduler", "warmup_steps", "epochs",
                    "max_steps", "batch_size", "grad_accum", "weight_decay", "max_grad_norm",
                    "max_length", "max_prompt_length", "seed", "dtype")
_LORA = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules")


def export_run(run_dir: str | Path, output: str | Path, merge: bool = True,
               push_to_hub: str | None = None) -> Path:
    """Write a run's final model, its tokenizer and a model card to ``output`` (atomically).

    A LoRA adapter is folded into its base model unless ``merge`` is false, in which case the
    adapter itself is exported. ``push_to_hub`` (``owner/name``) then uploads the directory,
    creating the repository if needed; a failed push leaves the export in place.
    """
    run, output = RunDir(Path(run_dir)), Path(output)
    if not is_run_dir(run.path):
        raise UsageError(f"{run_dir} is not a run directory: it has no config.json and "
                         "metrics.jsonl", ["pass the directory `preftune train` wrote"])
    record = json.loads(run.config_path.read_text(encoding="utf-8"))
    source = locate(run.path)
    check_output(output, [source])
    kind: Kind = "full" if source.base is None else "merged" if merge else "adapter"
    with atomic_dir(output) as tmp:
        if kind == "merged":
            write_model(merged_model(source), load_tokenizer(source.tokenizer_dir), tmp)
        else:
            shutil.copytree(source.model_dir, tmp, dirs_exist_ok=True)
        card = model_card(record, run.metrics(), kind, push_to_hub or str(output))
        (tmp / "README.md").write_text(card, encoding="utf-8")
    if push_to_hub:
        push_folder(output, push_to_hub)
    return output


def push_folder(folder: Path, repo_id: str) -> None:
    """Upload ``folder`` to the hub model repository ``repo_id``, creating it if needed."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hub_errors

    try:
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                          commit_message="Upload model exported by preftune")
    except hub_errors.HFValidationError as e:
        raise UsageError(f"invalid hub repository id {repo_id!r}: {_first_line(e)}",
                         ["use owner/name, e.g. --push-to-hub my-org/my-model"]) from e
    # HTTPError is the HTTP client's base class: connection failures and error statuses.
    except (OSError, hub_errors.HTTPError) as e:
        raise MissingError(f"cannot push {folder} to the hub repository {repo_id!r}: "
                           f"{_first_line(e)}", [
                               "check that this machine reaches huggingface.co and that you "
                               "are logged in: hf auth login (or set HF_TOKEN)",
                               f"the export is complete; push it later with: hf upload "
                               f"{repo_id} {folder}"]) from e


def model_card(record: dict[str, Any], metrics: list[dict[str, Any]], kind: Kind,
               name: str) -> str:
    """README.md for an exported run: front matter, then what was trained, on what, how,
    with which result, and how to load it. ``record`` is the run's config.json."""
    cfg = record["config"]
    data = record.get("data", {})
    base = str(cfg["model"])
    what = {"merged": "a LoRA adapter merged into the base weights",
            "adapter": "a LoRA adapter (load it onto the base model with peft)",
            "full": "full fine-tuning"}[kind]
    algos = _algorithms(cfg)
    label = describe(algos, cfg.get("loss_weights"))
    sections = [
        _front_matter(base, algos, kind),
        f"# {name.rstrip('/').split('/')[-1]}\n\n"
        f"Preference-tuned with preftune ({label}) from `{base}`: {what}.",
        f"## Base model\n\n`{base}`" + _resolved_base(base),
        "## Training data\n\n" + _table([
            ("source", data.get("source")), ("fingerprint", data.get("fingerprint")),
            ("training pairs", (data.get("train") or {}).get("pairs")),
            ("evaluation pairs", (data.get("eval") or {}).get("pairs")),
            # unpaired data (kto): examples, and how many of them are desirable
            ("training examples", (data.get("train") or {}).get("examples")),
            ("desirable / undesirable", _split(data.get("train"))),
            ("evaluation examples", (data.get("eval") or {}).get("examples"))]),
        "## Algorithm and hyperparameters\n\n" + _table(_hyperparameters(cfg))
        + "\n\n" + "\n".join(f"- {n}: {ALGORITHMS[n].description}. {ALGORITHMS[n].paper}."
                              for n in algos if n in ALGORITHMS),
        "## Final metrics\n\n" + _metrics_section(metrics),
        "## Versions\n\n" + _table([*(record.get("versions") or {}).items(),
                                    ("trained", record.get("created"))]),
        "## How to load\n\n" + _how_to_load(name, kind),
    ]
    return "\n\n".join(sections) + "\n"


def _split(stats: dict[str, Any] | None) -> str | None:
    if not stats or stats.get("desirable") is None:
        return None
    return f"{stats['desirable']} / {stats['undesirable']}"


def _algorithms(cfg: dict[str, Any]) -> list[str]:
    """The run's algorithms: one name, or a mixture's parts."""
    algo = cfg.get("algo", "dpo")
    return [algo] if isinstance(algo, str) else [str(a) for a in algo]


def _front_matter(base: str, algos: list[str], kind: Kind) -> str:
    meta: dict[str, Any] = {"library_name": "peft" if kind == "adapter" else "transformers"}
    hub_id = _hub_id(base)
    # The hub rejects a card whose base_model is not a hub id (a local path, tiny).
    if hub_id is not None:
        meta["base_model"] = hub_id
    meta["tags"] = ["preftune", *algos] + (["lora"] if kind != "full" else [])
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---"


def _hub_id(base: str) -> str | None:
    if base == "tiny":
        return None
    try:
        source = resolve_model(base)
    except MissingError:
        return None
    return None if Path(source).exists() else source


def _resolved_base(base: str) -> str:
    hub_id = _hub_id(base)
    if base == "tiny":
        return " (preftune's embedded 2-layer test model, built locally)"
    if hub_id is not None and hub_id != base:
        return f" (`{hub_id}` on the Hugging Face Hub)"
    return ""


def _hyperparameters(cfg: dict[str, Any]) -> list[tuple[str, Any]]:
    algos = [a for a in _algorithms(cfg) if a in ALGORITHMS]
    names = ["algo", *(["loss_weights"] if len(algos) > 1 else []), *hyperparameters(algos),
             *_HYPERPARAMETERS]
    # What is at its default and off says nothing (sft_weight 0, ld_alpha None, ...).
    off = {"sft_weight": 0.0, "use_weighting": False, "ld_alpha": None,
           "f_divergence": "reverse_kl"}
    names = [n for n in names if n not in off or cfg.get(n, off[n]) != off[n]]
    if cfg.get("f_divergence") != "alpha_divergence" and "f_alpha" in names:
        names.remove("f_alpha")
    names += ["lora", *_LORA] if cfg.get("lora") else ["lora"]
    return [(name, cfg.get(name)) for name in names if name in cfg]


def _metrics_section(metrics: list[dict[str, Any]]) -> str:
    train_rows = [r for r in metrics if not any(k.startswith("eval/") for k in r)]
    eval_rows = [r for r in metrics if any(k.startswith("eval/") for k in r)]
    parts = []
    if train_rows:
        parts.append("Last training step:\n\n" + _table(list(train_rows[-1].items())))
    if eval_rows:
        parts.append("Last evaluation:\n\n" + _table(list(eval_rows[-1].items())))
    return "\n\n".join(parts) or "No metrics were logged."


def _how_to_load(name: str, kind: Kind) -> str:
    if kind == "adapter":
        code = ("from peft import AutoPeftModelForCausalLM\n"
                "from transformers import AutoTokenizer\n\n"
                f'model = AutoPeftModelForCausalLM.from_pretrained("{name}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{name}")')
    else:
        code = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{name}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{name}")')
    return f"```python\n{code}\n```"


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| name | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in rows if value is not None]
    return "\n".join(lines)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
