"""Exact-length prompts through a tokenizer trained in the test; shared prefix blocks really shared."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from experiments.bench.prompts import PromptSynthesizer, load_tokenizer
from experiments.workloads import BLOCK_TOKENS, TraceRequest


@pytest.fixture(scope="module")
def synth(tokenizer_dir):
    return PromptSynthesizer(load_tokenizer(tokenizer_dir), seed=5)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 2000), st.integers(0, 3))
def test_prompt_has_exact_token_count(synth, n, blocks):
    req = TraceRequest("r", 0.0, n, 1, prefix_blocks=tuple(range(min(blocks, n // BLOCK_TOKENS))))
    text = synth.text(req)
    assert len(synth.tokenizer.encode(text).ids) == n


def test_shared_blocks_share_leading_tokens_and_tails_differ(synth):
    a = synth.tokenizer.encode(synth.text(TraceRequest("a", 0, 1300, 1, prefix_blocks=(7, 9)))).ids
    b = synth.tokenizer.encode(synth.text(TraceRequest("b", 0, 1100, 1, prefix_blocks=(7, 9)))).ids
    c = synth.tokenizer.encode(synth.text(TraceRequest("c", 0, 1100, 1, prefix_blocks=(7, 8)))).ids
    assert a[: 2 * BLOCK_TOKENS] == b[: 2 * BLOCK_TOKENS]
    assert a[2 * BLOCK_TOKENS: 2 * BLOCK_TOKENS + 20] != b[2 * BLOCK_TOKENS: 2 * BLOCK_TOKENS + 20]
    assert c[:BLOCK_TOKENS] == a[:BLOCK_TOKENS] and c[BLOCK_TOKENS: 2 * BLOCK_TOKENS] != a[BLOCK_TOKENS: 2 * BLOCK_TOKENS]


def test_seed_changes_content_not_length(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    req = TraceRequest("a", 0, 300, 1, prefix_blocks=())
    one, two = PromptSynthesizer(tok, 0).text(req), PromptSynthesizer(tok, 1).text(req)
    assert one != two and len(tok.encode(one).ids) == len(tok.encode(two).ids) == 300
    assert PromptSynthesizer(tok, 0).text(req) == one


def test_special_tokens_added_by_tokenizer_count(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    tok.add_special_tokens(["<bos>"])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))])
    synth = PromptSynthesizer(tok, 0)
    assert synth.special_tokens == 1
    assert len(tok.encode(synth.text(TraceRequest("a", 0, 77, 1))).ids) == 77


def test_unsuitable_tokenizers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected a directory holding tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="expected a Hugging Face tokenizer.json"):
        load_tokenizer(tmp_path)
    chars = Tokenizer(models.WordLevel({c: i for i, c in enumerate("abc ")}, unk_token="a"))
    chars.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(ValueError, match="single-token words"):
        PromptSynthesizer(chars)
