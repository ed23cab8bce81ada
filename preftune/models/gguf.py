"""GGUF files as models: converted once to a ``save_pretrained`` directory, then cached.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=name)``) by dequantizing
every tensor; the model it returns carries a gguf ``quantization_config`` and refuses
``save_pretrained``. ``import_gguf`` therefore copies the weights into a fresh float32 model
built from the same config without it, and saves that beside the file's tokenizer (chat
template included). ``converted_dir`` does this once per file, under
``cache_dir()/gguf/<stem>-<key>``, the key taken from the file's resolved path, size and
mtime: a changed file gets a new directory, and a cached one costs a ``stat`` to find.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from preftune import settings
from preftune.errors import MissingError, UsageError
from preftune.fsutil import atomic_dir

VERSION = 1  # bump when the conversion changes: new cache directories, old ones left alone
MAGIC = b"GGUF"  # the first four bytes of every GGUF file


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` names a GGUF model: a ``.gguf`` file (or any file that starts with
    the GGUF magic, as ollama's blobs do), or a directory without ``config.json`` that
    holds ``.gguf`` files. Never raises; ``gguf_file`` says which file, or why none."""
    return bool(_candidates(Path(path).expanduser()))


def gguf_file(path: str | Path) -> Path | None:
    """The GGUF file ``path`` names: the file itself, or the single ``.gguf`` file inside a
    directory that has no ``config.json``; None when it names none. A directory with several
    is ambiguous: ``MissingError`` listing them."""
    found = _candidates(Path(path).expanduser())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise MissingError(f"{path} holds {len(found)} .gguf files ({names}); which one?",
                           [f"pass the file itself, e.g. --model {found[0]}"])
    return found[0] if found else None


def converted_dir(path: str | Path) -> Path:
    """The cached ``save_pretrained`` directory of the GGUF file ``path`` names, converted on
    first use. Processes that ask at once (``accelerate launch``) convert it once: the rest
    wait on a lock and find it done."""
    file = _require_file(path)
    stat = file.stat()
    identity = json.dumps([VERSION, str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    target = settings.cache_dir() / "gguf" / f"{file.stem}-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if not (target / "config.json").exists():
            # Under the lock, a temporary directory of this target is a killed conversion's.
            for stale in target.parent.iterdir():
                if stale.name.startswith(f".{target.name}.") and stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            if target.exists():  # left by hand, or by something other than import_gguf
                shutil.rmtree(target)
            import_gguf(file, target)
    return target


def import_gguf(path: str | Path, output_dir: str | Path) -> Path:
    """Write the model and tokenizer of the GGUF file ``path`` names to ``output_dir``, as
    ``save_pretrained`` does: float32 weights (dequantized), config, tokenizer and chat
    template. ``output_dir`` must be missing or empty; it appears whole or not at all."""
    file = _require_file(path)
    output = Path(output_dir).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output_dir} already exists and is not empty",
                         ["choose a new output directory, or remove this one first"])
    model, tokenizer = _read(file)
    with atomic_dir(output) as tmp:  # onto a missing or empty directory
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return output


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path.absolute()] if path.suffix.lower() == ".gguf" or _has_magic(path) else []
    if path.is_dir() and not (path / "config.json").exists():
        return sorted(p.absolute() for p in path.iterdir()
                      if p.suffix.lower() == ".gguf" and p.is_file())
    return []


def _has_magic(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _require_file(path: str | Path) -> Path:
    file = gguf_file(path)
    if file is not None:
        return file
    where = Path(path).expanduser()
    if where.is_dir():
        why = ("holds a config.json: it is a save_pretrained directory, not a GGUF one"
               if (where / "config.json").exists() else "holds no .gguf file")
        raise MissingError(f"{path} {why}", ["pass a .gguf file, or a directory holding one"])
    if not where.exists():
        raise MissingError(f"no such file: {path}", ["check the path of the .gguf file"])
    raise MissingError(f"{path} is not a GGUF file (it does not start with {MAGIC!r})",
                       ["pass a .gguf file, e.g. one llama.cpp or ollama uses"])


def _reader(file: Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise _no_gguf_package() from e
    # GGUFReader reports a bad magic, a truncated header or tensors cut short by the end of
    # the file as ValueError (numpy's, mostly); the rest are the same story in other words.
    try:
        return GGUFReader(file)
    except (ValueError, IndexError, KeyError, OSError) as e:
        raise MissingError(f"{file} is not a readable GGUF file: {_first_line(e)}", [
            "check that the file is complete (its size against the source's), "
            "and download it again if not",
        ]) from e


def _read(file: Path) -> tuple[Any, Any]:
    """The dequantized model, in float32 and without its gguf quantization_config, and the
    tokenizer, both from ``file``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    reader = _reader(file)  # a damaged file fails here, before transformers sees it
    declared = _architecture(file, reader)
    try:
        config = AutoConfig.from_pretrained(file.parent, gguf_file=file.name)
        _check_size(file, reader, config)
        loaded = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name,
                                                      dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    except ImportError as e:  # transformers' own check: gguf missing or older than it needs
        raise _no_gguf_package() from e
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise _unreadable(file, declared, e) from e

    config = loaded.config
    del config.quantization_config  # what makes save_pretrained refuse
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # ties embeddings
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model, tokenizer


def _architecture(file: Path, reader: Any) -> str:
    """The architecture the header declares (``general.architecture``, e.g. llama)."""
    field = reader.fields.get("general.architecture")
    if field is None:
        raise MissingError(f"{file} is not a model GGUF file: its header declares no "
                           "general.architecture", ["pass the GGUF file of a language model"])
    return str(field.contents())


def _check_size(file: Path, reader: Any, config: Any) -> None:
    """Refuse a header that describes a model much larger than the file's tensors hold.

    transformers allocates the model the header describes before it reads a tensor, and
    fills in defaults for what the header leaves out (a llama of 7B parameters), so a
    vocab-only file or a damaged header would otherwise end in the out-of-memory killer.
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes only, no memory
        skeleton = AutoModelForCausalLM.from_config(config)
    wanted = sum(p.numel() for p in skeleton.parameters())
    held = sum(int(t.n_elements) for t in reader.tensors)
    if wanted > 2 * held:  # margin: a family may keep a few weights the file does not
        raise MissingError(
            f"{file} holds {held:,} weights, but its header describes a "
            f"{config.model_type} model of {wanted:,} parameters",
            ["it is not a complete model file (a vocab-only file, or a damaged header): "
             "download the model's GGUF file again"])


def _unreadable(file: Path, declared: str, error: Exception) -> MissingError:
    import transformers

    first = _first_line(error)
    if "is not supported" in first:
        return MissingError(
            f"{file} declares architecture {declared!r}, which transformers' GGUF support "
            f"(transformers {transformers.__version__}) cannot read",
            [f"transformers reads GGUF files of: {', '.join(_readable_architectures())}",
             "or train the original model: its hub id or save_pretrained directory"])
    return MissingError(f"transformers cannot load {file} (architecture {declared!r}): {first}",
                        ["train the original model instead: its hub id or save_pretrained "
                         "directory"])


def _readable_architectures() -> list[str]:
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:  # moved in some transformers release: the hint still helps without it
        return ["(see the transformers GGUF documentation)"]
    # The table also has rows for the header's general and tokenizer sections.
    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]


def _no_gguf_package() -> MissingError:
    return MissingError("reading GGUF files needs the gguf package (0.10 or newer)",
                        ["pip install gguf"])


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
