"""The tokenizer built from the GGUF gives Hugging Face's ids on a varied text set; the chat
template renders as Hugging Face's; incremental detokenisation never splits a character."""
import pytest

from serve.tokenizer import Detokenizer

TEXTS = [
    "Hello, world!", "  multiple   spaces\tand\ttabs\n\nnewlines", "   leading", "trailing   ", "",
    "Unicode: café, naïve, 日本語のテキスト, emoji 😀👍🏽🇫🇷, Ελληνικά, русский, עברית, العربية",
    "def f(x):\n    return {'a': [x ** 2, x // 3]}  # code\n\tif x != 0: pass\n",
    "Numbers 1234567 and 3.14159, 2024-12-01, 0x1F, 1e-9", "<|im_start|>user\nHi<|im_end|>\n",
    "   \n\t  \r\n", "mixed\u00a0nbsp\u2003emsp\u200bzero-width", "'s 't 're 've I'M He'LL they'd",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "<html><body>&amp;</body></html>",
    "SELECT * FROM t WHERE x > 10;", "日本語とEnglishの混在 mixed テキスト!!!", "\x00\x01 control \x7f",
]


def test_ids_equal_transformers(engine, hf_tokenizer):
    tok = hf_tokenizer
    for t in TEXTS:
        assert engine.tokenizer.encode(t, add_special_tokens=False) == tok.encode(t, add_special_tokens=False), t
        ids = engine.tokenizer.encode(t, add_special_tokens=False)
        assert engine.tokenizer.decode(ids, skip_special_tokens=False) == tok.decode(ids, skip_special_tokens=False)


def test_chat_template_equals_transformers(engine, hf_tokenizer):
    tok = hf_tokenizer
    for msgs in ([{"role": "user", "content": "What is 2+2?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]):
        assert engine.tokenizer.apply_chat_template(msgs) == tok.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True)


def test_incremental_detokenisation_never_splits_a_character(engine):
    tok = engine.tokenizer
    text = "Grüße 😀👍🏽 日本語 café\n\ttab"
    ids = tok.encode(text, add_special_tokens=False)
    d = Detokenizer(tok)
    pieces = [d.add(i) for i in ids]
    pieces.append(d.flush())
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len(ids) > len([p for p in pieces if p])      # some tokens held back half a character
