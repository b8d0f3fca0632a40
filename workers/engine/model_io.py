"""Import a base model into the artifact store: a GGUF file or a Hugging Face folder.

Everything downstream (training, generation, vLLM) reads one format: a folder of safetensors,
config.json and tokenizer files with a chat template. GGUF is converted to it once, here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from workers.engine.artifacts import atomic_directory, tree_checksum


class ModelImportError(ValueError):
    """The source is not a usable model; the message names the file and the fix."""


@dataclass(frozen=True)
class ImportedModel:
    path: str
    sha256: str
    num_parameters: int
    context_length: int | None
    architecture: str


def import_gguf(gguf_path: str | Path, dest_dir: str | Path) -> ImportedModel:
    """Dequantize a GGUF checkpoint to fp32 and save it once as a safetensors HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelImportError(f"GGUF file not found: {gguf_path}")
    with atomic_directory(dest_dir) as temp:
        folder, name = str(gguf_path.parent), gguf_path.name
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # The GGUF loader marks the model as quantized even though the weights are now plain fp32;
        # transformers then refuses save_pretrained and training. The weights are real tensors, so
        # dropping the quantizer bookkeeping is safe.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        _ensure_chat_ready(tokenizer, model, gguf_path)
        model.save_pretrained(temp, safe_serialization=True)
        tokenizer.save_pretrained(temp)
        del model
    return describe_model(dest_dir)


def import_hf(src_dir: str | Path, dest_dir: str | Path) -> ImportedModel:
    """Validate a Hugging Face model folder and copy it atomically into the store."""
    src = Path(src_dir)
    validate_hf_dir(src)
    with atomic_directory(dest_dir) as temp:
        for item in sorted(src.iterdir()):
            if item.name.startswith("."):
                continue
            target = temp / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
    return describe_model(dest_dir)


def validate_hf_dir(path: str | Path) -> None:
    folder = Path(path)
    if not folder.is_dir():
        raise ModelImportError(f"model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise ModelImportError(f"{folder}: config.json is missing; export the model with save_pretrained")
    if not list(folder.glob("*.safetensors")):
        raise ModelImportError(
            f"{folder}: no *.safetensors weights; re-save with save_pretrained(safe_serialization=True)"
        )
    tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json")
    if not any((folder / name).is_file() for name in tokenizer_files):
        raise ModelImportError(
            f"{folder}: no tokenizer (one of {', '.join(tokenizer_files)}); save the tokenizer beside the weights"
        )


def describe_model(path: str | Path) -> ImportedModel:
    """Read size and shape from config + safetensors headers, without loading the weights."""
    import json

    from safetensors import safe_open

    folder = Path(path)
    config = json.loads((folder / "config.json").read_text())
    num_parameters = 0
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                num_parameters += count
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    return ImportedModel(
        path=str(folder),
        sha256=tree_checksum(folder),
        num_parameters=num_parameters,
        context_length=config.get("max_position_embeddings"),
        architecture=architectures[0],
    )


def _ensure_chat_ready(tokenizer, model, source: Path) -> None:
    """Training and generation use the chat template and batch with padding: require both."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelImportError(f"{source}: the tokenizer has no chat template; this is not an instruct model")
    if tokenizer.pad_token is None:
        # Padding positions are masked out, so any existing token is correct; EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
