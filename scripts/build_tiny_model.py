#!/usr/bin/env python3
"""Build, offline, the tiny random-weight Qwen3-MoE model the real CPU engines serve in tests.

Output directory (``--out``, e.g. ``models/tiny-qwen3-moe``), loadable by vLLM, SGLang and
``transformers.AutoModelForCausalLM`` / ``AutoTokenizer`` with ``HF_HUB_OFFLINE=1``:

- ``config.json``, ``generation_config.json``, ``model.safetensors``: a ``Qwen3MoeForCausalLM`` in
  bfloat16 with 2 decoder layers, hidden size 128, 8 routed experts (no shared expert), top-2 routing,
  expert intermediate size 256, vocabulary 2048, 4096 positions (2.2 M parameters, 4.4 MB).
- ``tokenizer.json``, ``tokenizer_config.json``: a byte-level BPE trained with ``tokenizers`` on
  generated text, wrapped as ``PreTrainedTokenizerFast`` with a ChatML ``chat_template``.
- ``moesched_build.json``: the build recipe; a rebuild with the same recipe is skipped.

Deterministic: the same ``--seed`` (and transformers version) gives byte-identical files. Weights are
drawn tensor by tensor (sorted by name) from one seeded generator, not by transformers'
initialisation code. Atomic: the model is built and checked in a temporary sibling directory, then
renamed into place. Needs ``torch`` and ``transformers`` (run it with an engine venv's Python).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

#: Bumped whenever the recipe below changes, so an old build is rebuilt rather than reused.
RECIPE_VERSION = 1
VOCAB_SIZE = 2048
INIT_STD = 0.02
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MODEL_SHAPE = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 256,
    "intermediate_size": 512,
    "max_position_embeddings": 4096,
    "vocab_size": VOCAB_SIZE,
}


def synthetic_corpus(seed: int, num_lines: int = 20000) -> list[str]:
    """Return ``num_lines`` lines of deterministic pseudo-text (words, numbers, code, chat turns)."""
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "mo", "ne", "sa", "lu", "pe", "di", "go", "an", "el", "or", "is",
                 "um", "the", "ing", "ion", "er", "st", "qu", "ex", "pro", "com"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(600)]
    words += ["the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "expert", "token",
              "request", "server", "schedule", "model", "batch", "queue", "def", "return", "import"]
    lines = []
    for _ in range(num_lines):
        kind = rng.random()
        if kind < 0.6:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 16)))
            lines.append(sentence.capitalize() + rng.choice([".", "?", "!", ","]))
        elif kind < 0.75:
            lines.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(6)))
        elif kind < 0.9:
            name, arg = rng.choice(words), rng.choice(words)
            lines.append(f"def {name}({arg}):\n    return {arg} + {rng.randint(0, 99)}")
        else:
            role = rng.choice(["user", "assistant", "system"])
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 10)))
            lines.append(f"<|im_start|>{role}\n{text}<|im_end|>")
    return lines


def train_tokenizer(seed: int):
    """Train a byte-level BPE of at most ``VOCAB_SIZE`` entries; returns a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(synthetic_corpus(seed), trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer, out: Path) -> None:
    """Wrap ``tokenizer`` as ``PreTrainedTokenizerFast`` (ChatML template) and save it to ``out``."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )
    wrapped.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = CHATML_TEMPLATE  # some transformers versions write chat_template.jinja only
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build_model(seed: int, eos_id: int, pad_id: int, out: Path) -> int:
    """Write a seeded random ``Qwen3MoeForCausalLM`` (bf16 safetensors) to ``out``; returns #params."""
    import torch
    from transformers import GenerationConfig, Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        **MODEL_SHAPE,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=True,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="bfloat16",
    )
    model = Qwen3MoeForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if name.endswith("norm.weight"):
                tensor.fill_(1.0)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * INIT_STD)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, eos_token_id=eos_id,
                                               pad_token_id=pad_id)
    model.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def check_loadable(out: Path) -> None:
    """Load ``out`` the way the engines do and run one forward pass; raises on any problem."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello expert"}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    with torch.no_grad():
        logits = model(ids).logits
    if tuple(logits.shape) != (1, ids.shape[1], MODEL_SHAPE["vocab_size"]):
        raise RuntimeError(f"{out}: unexpected logits shape {tuple(logits.shape)}")


def recipe(seed: int) -> dict:
    """The build inputs recorded in ``moesched_build.json``."""
    return {"recipe_version": RECIPE_VERSION, "seed": seed, "model": MODEL_SHAPE,
            "architecture": "Qwen3MoeForCausalLM", "dtype": "bfloat16"}


def build(out: Path, seed: int) -> None:
    """Build the model into a temporary sibling of ``out`` and rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tokenizer = train_tokenizer(seed)
        save_tokenizer(tokenizer, tmp)
        num_params = build_model(seed, tokenizer.token_to_id("<|im_end|>"),
                                 tokenizer.token_to_id("<|endoftext|>"), tmp)
        check_loadable(tmp)
        (tmp / "moesched_build.json").write_text(json.dumps(recipe(seed), indent=2, sort_keys=True) + "\n")
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.chmod(0o755)  # mkdtemp creates it private
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"built {out}: {num_params / 1e6:.2f} M parameters, tokenizer vocabulary "
          f"{tokenizer.get_vocab_size()}, seed {seed}")


def is_up_to_date(out: Path, seed: int) -> bool:
    """True if ``out`` holds a complete build of the same recipe."""
    stamp = out / "moesched_build.json"
    try:
        return json.loads(stamp.read_text()) == recipe(seed)
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and tokenizer corpus")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    if not args.force and is_up_to_date(args.out, args.seed):
        print(f"{args.out} is up to date (seed {args.seed}); nothing to do")
        return 0
    try:
        build(args.out, args.seed)
    except ImportError as exc:
        print(f"build_tiny_model: error: {exc}; run it with an engine venv's Python "
              "(e.g. .venvs/sglang/bin/python), which has torch and transformers", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
