"""Tokenizer (the `tokenizers` library), chat template (jinja2) and incremental detokenisation.

    tok = Tokenizer.from_gguf(tokens=..., merges=..., ...)   # or Tokenizer.from_dir(hf_dir)
    ids = tok.encode("Hello")                               # BOS added where the model wants it
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    d = Detokenizer(tok); d.add(id) -> new text (never half a UTF-8 character)

A GGUF byte-level BPE vocabulary (``tokenizer.ggml.model == "gpt2"``) becomes a BPE model with
GPT-2's byte-to-unicode alphabet; the pre-tokenizer follows ``tokenizer.ggml.pre`` as
llama.cpp does (SmolLM splits digits one by one; Llama 3 and Qwen2 use their own split
patterns); control tokens (type 3) are special tokens, kept whole and skipped when decoding.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["Tokenizer", "Detokenizer", "TokenizerError"]

# Split patterns of the pre-tokenizers llama.cpp names (the public definitions of these
# vocabularies); anything else gets GPT-2's own byte-level split.
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {"llama-bpe": _LLAMA3, "llama3": _LLAMA3, "llama-v3": _LLAMA3, "smaug-bpe": _LLAMA3,
           "qwen2": _QWEN2, "deepseek-r1-qwen": _QWEN2}
_CONTROL = 3


class TokenizerError(ValueError):
    """A tokenizer that cannot be built or a chat template that fails; one line."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the alphabet of byte-level BPE)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


class Tokenizer:
    def __init__(self, tok, chat_template: str | None, bos_id: int | None, eos_ids: list[int],
                 add_bos: bool):
        self.tok = tok                      # tokenizers.Tokenizer
        self.chat_template = chat_template
        self.bos_id = bos_id
        self.eos_ids = [int(e) for e in eos_ids]
        self.add_bos = add_bos
        self._template = None
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)

    # -------------------------------------------------------------- construction
    @classmethod
    def from_gguf(cls, tokens, merges, token_types, model, pre, bos_id, eos_id, add_bos,
                  chat_template, where: str = "GGUF") -> "Tokenizer":
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer
        if model != "gpt2":
            raise TokenizerError(f"{where}: tokenizer model {model!r} is not served yet (byte-level BPE "
                                 f"'gpt2' is: SmolLM2, Llama 3, Qwen2)")
        if not tokens or merges is None:
            raise TokenizerError(f"{where}: the GGUF has no tokenizer vocabulary or merges")
        alphabet = set(_bytes_to_unicode().values())
        vocab = {t: i for i, t in enumerate(tokens)}
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        bpe = models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False)
        tok = HFTokenizer(bpe)
        split = _SPLITS.get(pre or "")
        if split is not None:
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        elif pre == "smollm":
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        specials = [AddedToken(t, special=True, normalized=False)
                    for t, ty in zip(tokens, token_types or []) if ty == _CONTROL and set(t) <= alphabet]
        tok.add_special_tokens(specials)
        return cls(tok, chat_template, None if bos_id is None else int(bos_id),
                   [] if eos_id is None else [int(eos_id)], add_bos)

    @classmethod
    def from_dir(cls, d: Path) -> "Tokenizer":
        """A Hugging Face-style directory: tokenizer.json and tokenizer_config.json (plus
        generation_config.json's end-of-turn ids where there is one)."""
        from tokenizers import Tokenizer as HFTokenizer
        d = Path(d)
        try:
            tok = HFTokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as e:
            raise TokenizerError(f"{d}/tokenizer.json: {e}") from None
        cfg = _read_json(d / "tokenizer_config.json")
        gen = _read_json(d / "generation_config.json")

        def tid(v):
            if isinstance(v, dict):
                v = v.get("content")
            return tok.token_to_id(v) if isinstance(v, str) else None
        bos = cfg.get("bos_id", tid(cfg.get("bos_token")))
        eos = cfg.get("eos_ids") or [x for x in [tid(cfg.get("eos_token"))] if x is not None]
        g = gen.get("eos_token_id")
        eos = list(dict.fromkeys(eos + ([g] if isinstance(g, int) else list(g or []))))
        template = cfg.get("chat_template")
        if template is None and (d / "chat_template.jinja").is_file():
            template = (d / "chat_template.jinja").read_text()
        add_bos = bool(cfg.get("add_bos_token", False))
        return cls(tok, template, bos, eos, add_bos)

    def save(self, d: Path) -> None:
        """tokenizer.json + tokenizer_config.json, readable by ``from_dir``."""
        d = Path(d)
        self.tok.save(str(d / "tokenizer.json"))
        (d / "tokenizer_config.json").write_text(json.dumps({
            "chat_template": self.chat_template, "bos_id": self.bos_id, "eos_ids": self.eos_ids,
            "add_bos_token": self.add_bos,
            "bos_token": self.tok.id_to_token(self.bos_id) if self.bos_id is not None else None,
            "eos_token": self.tok.id_to_token(self.eos_ids[0]) if self.eos_ids else None}, indent=1))

    # -------------------------------------------------------------- use
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if add_special_tokens and self.add_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token(self, i: int) -> str | None:
        return self.tok.id_to_token(int(i))

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The model's chat template rendered with jinja2 (sandboxed, as Hugging Face does)."""
        if not self.chat_template:
            raise TokenizerError("this model has no chat template; send plain prompts")
        if self._template is None:
            from jinja2.exceptions import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(msg):
                raise TemplateError(msg)
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            try:
                self._template = env.from_string(self.chat_template)
            except TemplateError as e:
                raise TokenizerError(f"chat template does not parse: {e}") from None
        from jinja2.exceptions import TemplateError
        try:
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                bos_token=self.token(self.bos_id) if self.bos_id is not None else "",
                eos_token=self.token(self.eos_ids[0]) if self.eos_ids else "")
        except TemplateError as e:
            raise TokenizerError(f"chat template: {e}") from None


def _read_json(p: Path) -> dict:
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


class Detokenizer:
    """Incremental decoding of one sequence's output: ``add(id)`` returns the text the new
    token completes. Text is decoded over a short window of recent tokens so that byte-level
    tokens that split a multi-byte character are held back until it is whole."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.ids: list[int] = []
        self.prefix = 0     # window start
        self.read = 0       # tokens whose text has been returned

    def add(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        done = self.tok.decode(self.ids[self.prefix:self.read])
        text = self.tok.decode(self.ids[self.prefix:])
        if len(text) > len(done) and not text.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return text[len(done):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (at the end of the sequence)."""
        done = self.tok.decode(self.ids[self.prefix:self.read])
        text = self.tok.decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return text[len(done):] if len(text) > len(done) else ""
