"""The BLIP tokenizer: BERT uncased WordPiece (+ [DEC], [ENC]), as transformers 5.23.0 runs it.

BLIP checkpoints carry bert-base-uncased's vocabulary plus two added special tokens: [DEC]
(30522, the caption decoder's bos) and [ENC] (30523, unused by transformers). Text is cleaned,
lower-cased and stripped of accents, CJK characters are split apart, words are split on
whitespace and punctuation, then WordPiece (greedy longest match, "##" continuations); the
result is wrapped as [CLS] ... [SEP].

The work is done by the `tokenizers` library from the checkpoint's tokenizer.json -- the same
engine transformers' BertTokenizer runs -- so ids and decoded strings are the same by
construction. A folder with only vocab.txt + tokenizer_config.json gets the same pipeline built
here the way transformers converts a BERT vocabulary.
"""

import json
import pathlib
import warnings

import numpy as np

from . import guards
from .errors import InputError, TokenizerError
from .outputs import BatchFeature

VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length for "no limit"
LARGE_INTEGER = int(1e20)  # above this, a model_max_length means "no limit"

# BertTokenizer.__init__'s defaults, for a vocab.txt without a tokenizer_config.json to say
BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def _token(value):
    """A special token as a string (configs write either "[X]" or {"content": "[X]", ...})."""
    return value.get("content") if isinstance(value, dict) else value


class _Tokenizer:
    """What transformers' TokenizersBackend does for every tokenizer: encode, pad, truncate,
    decode, special-token lookups, over a `tokenizers.Tokenizer` (`backend`)."""

    model_input_names = ("input_ids", "attention_mask")
    default_model_max_length = VERY_LARGE_INTEGER
    strip_spaces_on_cleanup = True  # False for BPE: 5.23 refuses the WordPiece cleanup there

    def __init__(self, backend, config, name_or_path=None):
        self._tok, self.name_or_path = backend, name_or_path
        self.model_max_length = int(config.get("model_max_length") or self.default_model_max_length)
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        for name in guards.SPECIAL_TOKEN_NAMES:
            setattr(self, name, _token(config.get(name)))
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        self.additional_special_tokens = [_token(t) for t in extra if not isinstance(extra, dict)]
        self.model_specific_tokens = {}  # e.g. {"image_token": "<image>"}
        for name, value in _model_specific_tokens(config).items():
            self.model_specific_tokens[name] = value
            setattr(self, name, value)

    # ------------------------------------------------------------------ encoding

    def __call__(
        self,
        text,
        text_pair=None,
        padding=False,
        truncation=None,
        max_length=None,
        add_special_tokens=True,
        return_tensors=None,
        return_attention_mask=None,
        return_token_type_ids=None,
        pad_to_multiple_of=None,
        padding_side=None,
        return_special_tokens_mask=False,
        return_offsets_mapping=False,
        return_length=False,
        verbose=True,
        **kwargs,
    ):
        """Encode a string or a list of strings -> BatchFeature(input_ids, token_type_ids,
        attention_mask, and on request special_tokens_mask, offset_mapping (character spans),
        length (tokens per row, padding included)): lists, or int64 arrays with
        return_tensors="np". verbose is accepted, as transformers': it only gates warnings.
        token_type_ids come by default only for classes whose model_input_names hold them
        (BERT); padding_side ("left" / "right") overrides the tokenizer's for this call."""
        if kwargs:
            raise InputError(f"tokenizer: unknown argument(s) {sorted(kwargs)}")
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise InputError(
                f"text must be a string or a list of strings, got {type(text).__name__}"
            )
        guards.check_text_call(texts, max_length, pad_to_multiple_of)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise InputError(f"{len(texts)} texts but {len(pairs)} text pairs")
        if return_tensors not in (None, "np"):
            raise InputError(
                f"return_tensors={return_tensors!r}: minblip returns NumPy ('np') or lists (None)"
            )
        if padding_side not in (None, "left", "right"):
            raise InputError(f"padding_side={padding_side!r}: expected 'left' or 'right'")
        encodings = self._encode(
            texts,
            pairs,
            padding,
            truncation,
            max_length,
            add_special_tokens,
            pad_to_multiple_of,
            padding_side or self.padding_side,
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        data = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask is None or return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [[list(span) for span in e.offsets] for e in encodings]
        if return_length:
            data["length"] = [len(e.ids) for e in encodings]
        if return_tensors == "np":
            lengths = {len(ids) for ids in data["input_ids"]}
            if len(lengths) > 1:
                raise InputError(
                    "texts of different lengths cannot form one array: pass padding=True"
                )
            data = {
                k: np.array(v, dtype=np.int64).reshape(len(texts), *([] if k == "length" else [-1]))
                for k, v in data.items()
            }
            if "offset_mapping" in data:  # (B, T, 2): a (start, end) span per token
                data["offset_mapping"] = data["offset_mapping"].reshape(len(texts), -1, 2)
        elif single:  # one text: its row itself, but "length" stays a list (as transformers')
            data = {k: v if k == "length" else v[0] for k, v in data.items()}
        return BatchFeature(**data)

    def _encode(
        self, texts, pairs, padding, truncation, max_length, add_special_tokens, multiple, side
    ):
        tok = self._tok
        if truncation not in (
            None,
            False,
            True,
            "longest_first",
            "do_not_truncate",
            "only_first",
            "only_second",
        ):
            raise InputError(f"truncation={truncation!r} is not a truncation strategy")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise InputError(f"padding={padding!r} is not a padding strategy")
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers: max_length alone implies truncation
        pad = padding not in (False, "do_not_pad")
        truncate = truncation not in (None, False, "do_not_truncate")
        limit = max_length
        if limit is None:  # the model's limit, unless it is "unlimited" (> 1e20, as OPT's 1e30)
            unlimited = self.model_max_length > LARGE_INTEGER
            if padding == "max_length" and unlimited:
                pad = False
            if truncate and unlimited:
                truncate = False
            limit = None if unlimited else self.model_max_length
        if pad and self.pad_token_id is None:
            raise InputError(f"padding={padding!r}: this tokenizer has no padding token")
        if pad and truncate and multiple and limit is not None and limit % multiple:
            raise InputError(
                f"truncation length ({limit}) is not a multiple of pad_to_multiple_of ({multiple})"
            )
        try:
            if truncate:
                strategy = "longest_first" if truncation in (True, None) else truncation
                tok.enable_truncation(limit, strategy=strategy, direction=self.truncation_side)
            if pad:
                tok.enable_padding(
                    direction=side,
                    pad_id=self.pad_token_id,
                    pad_token=self.pad_token,
                    length=limit if padding == "max_length" else None,
                    pad_to_multiple_of=multiple,
                )
            inputs = texts if pairs is None else list(zip(texts, pairs))
            encodings = tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as e:  # tokenizers raises plain Exceptions for impossible settings
            raise InputError(f"tokenizer: {e}") from None
        finally:
            tok.no_truncation()
            tok.no_padding()
        longest = max((len(e.ids) for e in encodings), default=0)
        if not truncate and longest > self.model_max_length:
            warnings.warn(
                "Token indices sequence length is longer than the specified maximum sequence "
                f"length for this model ({longest} > {self.model_max_length}); "
                "the model will refuse it",
                stacklevel=3,
            )
        return encodings

    # ------------------------------------------------------------------ decoding

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """ids (T,) -> a string; a batch (B, T) -> a list of strings (as 5.x's decode)."""
        token_ids = np.asarray(token_ids)
        if token_ids.ndim == 2:
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        ids = guards.token_ids(token_ids)
        text = self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        # 5.23 ignores the cleanup for BPE models (it would strip real spaces before punctuation)
        return _clean_up(text) if clean and self.strip_spaces_on_cleanup else text

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        return [
            self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences
        ]

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, (int, np.integer)):
            return self._tok.id_to_token(int(ids))
        return [self._tok.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens):
        def one(t):
            i = self._tok.token_to_id(t)
            return self.unk_token_id if i is None else i

        return one(tokens) if isinstance(tokens, str) else [one(t) for t in tokens]

    def add_tokens(self, tokens, special_tokens=False):
        """Add tokens (strings or tokenizers.AddedToken) after the vocabulary; those already
        there keep their ids. Returns how many are new."""
        if special_tokens:
            return self._tok.add_special_tokens(tokens)
        return self._tok.add_tokens(tokens)

    def tokenize(self, text):
        return self._tok.encode(text, add_special_tokens=False).tokens

    # ------------------------------------------------------------------ ids of the special tokens

    def _id(self, token):
        return None if token is None else self._tok.token_to_id(token)

    unk_token_id = property(lambda self: self._id(self.unk_token))
    sep_token_id = property(lambda self: self._id(self.sep_token))
    pad_token_id = property(lambda self: self._id(self.pad_token))
    cls_token_id = property(lambda self: self._id(self.cls_token))
    mask_token_id = property(lambda self: self._id(self.mask_token))
    bos_token_id = property(lambda self: self._id(self.bos_token))
    eos_token_id = property(lambda self: self._id(self.eos_token))

    @property
    def vocab_size(self):
        """The base vocabulary (without added tokens), as transformers counts it."""
        return self._tok.get_vocab_size(with_added_tokens=False)

    def __len__(self):
        return self._tok.get_vocab_size(with_added_tokens=True)

    def get_vocab(self):
        return self._tok.get_vocab(with_added_tokens=True)

    @property
    def all_special_tokens(self):
        """The named special tokens, then the extra and model-specific ones, each once."""
        named = [getattr(self, k) for k in guards.SPECIAL_TOKEN_NAMES]
        out = []
        for t in named + self.additional_special_tokens + list(self.model_specific_tokens.values()):
            if t is not None and t not in out:
                out.append(t)
        return out


class BertTokenizer(_Tokenizer):
    """transformers' BertTokenizer (the tokenizers-backed one) for BLIP checkpoints."""

    model_input_names = ("input_ids", "token_type_ids", "attention_mask")
    default_model_max_length = 512

    @classmethod
    def from_pretrained(cls, path_or_id, **kwargs):
        """tokenizer.json (+ tokenizer_config.json) from a folder or hub id; vocab.txt otherwise."""
        from .hub import resolve

        folder = resolve(path_or_id)
        config = (
            read_tokenizer_json(folder / "tokenizer_config.json")
            if (folder / "tokenizer_config.json").exists()
            else {}
        )
        if (folder / "special_tokens_map.json").exists():  # older saves keep the specials here
            for k, v in read_tokenizer_json(folder / "special_tokens_map.json").items():
                config.setdefault(k, v)
        config.update(kwargs)
        guards.check_tokenizer_config(config, folder)
        if (folder / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            try:
                backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as e:  # the library raises a bare Exception on malformed files
                raise TokenizerError(f"{folder / 'tokenizer.json'}: cannot be read ({e})") from None
            # padding/truncation stored in the file are not BertTokenizer's defaults
            backend.no_padding()
            backend.no_truncation()
        elif (folder / "vocab.txt").exists():  # BertTokenizer's own defaults under the config
            config = {**BERT_SPECIALS, **config}
            backend = _from_vocab(folder / "vocab.txt", config)
        else:
            raise TokenizerError(f"{folder}: no tokenizer.json or vocab.txt")
        return cls(backend, config, str(path_or_id))


def read_tokenizer_json(path):
    try:
        return guards.json_object(json.loads(pathlib.Path(path).read_text(encoding="utf-8")), path)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise TokenizerError(f"{path}: not readable as JSON ({e})") from None


def _from_vocab(vocab_file, config):
    """The BERT pipeline over vocab.txt, as transformers converts a slow BERT tokenizer."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    try:
        tokens = pathlib.Path(vocab_file).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{vocab_file}: cannot be read ({e})") from None
    if tokens and tokens[-1] == "":
        tokens = tokens[:-1]
    vocab = {t: i for i, t in enumerate(tokens)}
    unk, cls, sep = (
        _token(config.get(k, d))
        for k, d in [("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]")]
    )
    for t in (unk, cls, sep):
        if t not in vocab:
            raise TokenizerError(f"{vocab_file}: special token {t!r} is not in the vocabulary")
    lower = config.get("do_lower_case", True)
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=lower,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    # special tokens: those with fixed ids first (added_tokens_decoder), else in transformers' order
    decoder = config.get("added_tokens_decoder") or {}
    specials = [decoder[k]["content"] for k in sorted(decoder, key=int)]
    specials += [_token(config.get(k)) for k in guards.SPECIAL_TOKEN_NAMES if config.get(k)]
    specials += [
        _token(t)
        for t in (
            config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        )
    ]
    seen = []
    for t in specials:
        if t not in seen:
            seen.append(t)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in seen])
    return tok


def _clean_up(text):
    """transformers' clean_up_tokenization: no space before punctuation and English contractions."""
    for a, b in [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]:
        text = text.replace(a, b)
    return text


# ---------------------------------------------------------------------- BLIP-2's tokenizers


def _model_specific_tokens(config):
    """Named tokens beyond the standard ones ({"image_token": "<image>"}): *_token string keys
    of the config, and a dict-valued extra_special_tokens (5.x)."""
    out = {
        k: v
        for k, v in config.items()
        if k.endswith("_token") and k not in guards.SPECIAL_TOKEN_NAMES and isinstance(v, str)
    }
    extra = config.get("extra_special_tokens")
    if isinstance(extra, dict):
        out.update((k, _token(v)) for k, v in extra.items())
    return out


def _load_config(folder, kwargs):
    """tokenizer_config.json (+ the legacy special_tokens_map.json / added_tokens.json /
    tokenizer.json added_tokens) -> (config, added tokens [(id, AddedToken)], tokenizer.json
    parsed or None), as 5.23's PreTrainedTokenizerBase.from_pretrained reads them. The parsed
    tokenizer.json is handed on so that its megabytes are parsed once."""
    from tokenizers import AddedToken

    path = folder / "tokenizer_config.json"
    config = read_tokenizer_json(path) if path.exists() else {}
    config.update(kwargs)
    guards.check_tokenizer_config(config, folder)
    if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
        config["extra_special_tokens"] = config.pop("additional_special_tokens")
    added, parsed = [], None
    if "added_tokens_decoder" in config:
        for i, t in config["added_tokens_decoder"].items():
            t = {k: v for k, v in t.items() if k != "__type"}
            added.append((int(i), AddedToken(**t)))
    else:  # legacy files: special_tokens_map.json wins over tokenizer_config.json
        if (folder / "special_tokens_map.json").exists():
            for k, v in read_tokenizer_json(folder / "special_tokens_map.json").items():
                if k not in kwargs or not kwargs[k]:
                    config[k] = v
        named = {_token(config.get(k)) for k in guards.SPECIAL_TOKEN_NAMES if config.get(k)}
        if (folder / "added_tokens.json").exists():
            for t, i in read_tokenizer_json(folder / "added_tokens.json").items():
                special = t in named
                added.append((int(i), AddedToken(t, normalized=not special, special=special)))
        if (folder / "tokenizer.json").exists():
            parsed = read_tokenizer_json(folder / "tokenizer.json")
            for t in parsed.get("added_tokens", []):
                t = dict(t)
                added.append((t.pop("id"), AddedToken(**t)))
    return config, added, parsed


def _finish(backend, config, added, post_processor, file_json, fixed_post=False):
    """The end of 5.23's TokenizersBackend.__init__: padding/truncation sides stored in
    tokenizer.json, the added tokens (by id order) and every named/extra special token not yet
    known, then the post-processor (the file's, or bos/eos TemplateProcessing when the config
    says add_bos_token / add_eos_token or there is none)."""
    from tokenizers import AddedToken

    if file_json and file_json.get("padding"):
        config.setdefault("padding_side", file_json["padding"].get("direction", "Right").lower())
    if file_json and file_json.get("truncation"):
        config.setdefault(
            "truncation_side", file_json["truncation"].get("direction", "Right").lower()
        )
    known = set()
    tokens = []
    for _, t in sorted(added, key=lambda it: it[0]):
        if t.content not in known:
            known.add(t.content)
            tokens.append(t)
    named = [_token(config.get(k)) for k in guards.SPECIAL_TOKEN_NAMES if config.get(k)]
    extra = config.get("extra_special_tokens")
    extra = list(extra.values()) if isinstance(extra, dict) else list(extra or [])
    for t in named + [_token(t) for t in extra] + list(_model_specific_tokens(config).values()):
        if t not in known:
            known.add(t)
            tokens.append(AddedToken(t, special=True))
    for t in tokens:
        if t.content in named:
            t.special = True
    backend.add_tokens(tokens)
    if fixed_post:
        return
    explicit = "add_bos_token" in config or "add_eos_token" in config
    if post_processor is not None and not explicit:
        backend.post_processor = post_processor
        return
    backend.post_processor = _bos_eos_template(backend, config)


def _bos_eos_template(backend, config):
    """transformers' TokenizersBackend.update_post_processor: [bos] $A [eos] per the config."""
    from tokenizers import processors

    bos, eos = _token(config.get("bos_token")), _token(config.get("eos_token"))
    add_bos = bool(config.get("add_bos_token", False)) and bos is not None
    add_eos = bool(config.get("add_eos_token", False)) and eos is not None
    single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
    pair = (
        f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
    )
    special = [(t, backend.token_to_id(t)) for t, on in ((bos, add_bos), (eos, add_eos)) if on]
    for t, i in special:
        if i is None:
            raise TokenizerError(f"special token {t!r} is not in the vocabulary")
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)


def _read_tokenizer_json(path, model_type, cls_name, data=None):
    from tokenizers import Tokenizer

    data = read_tokenizer_json(path) if data is None else data
    found = (data.get("model") or {}).get("type")
    if found != model_type:
        raise TokenizerError(
            f"{path}: a {found} model, but {cls_name} needs a {model_type} model"
            " (tokenizer_class in tokenizer_config.json names the wrong class?)"
        )
    try:  # only for its post-processor: the model itself is rebuilt below, as 5.23 does
        post = Tokenizer.from_str(
            json.dumps(
                {**data, "added_tokens": [], "model": {**data["model"], "vocab": {}, "merges": []}}
                if model_type == "BPE"
                else data
            )  # fmt: skip
        ).post_processor
    except Exception as e:  # the library raises a bare Exception on malformed files
        raise TokenizerError(f"{path}: cannot be read ({e})") from None
    return data, post


class GPT2Tokenizer(_Tokenizer):
    """transformers' GPT2Tokenizer: byte-level BPE, the tokenizer of OPT (blip2-opt-*).

    5.23 rebuilds the pipeline from the vocabulary and merges whatever tokenizer.json says:
    BPE (no unk, no dropout) + ByteLevel pre-tokenizer (add_prefix_space from the config,
    default False) + ByteLevel decoder, no normalizer; only the post-processor comes from the
    file. OPT's config sets add_bos_token, so every text starts with </s> (its bos, id 2)."""

    strip_spaces_on_cleanup = False

    @classmethod
    def from_pretrained(cls, path_or_id, **kwargs):
        """tokenizer.json, or vocab.json + merges.txt, with tokenizer_config.json."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        from .hub import resolve

        folder = resolve(path_or_id)
        config, added, parsed = _load_config(folder, kwargs)
        file_json, post = None, None
        if (folder / "tokenizer.json").exists():
            file_json, post = _read_tokenizer_json(
                folder / "tokenizer.json", "BPE", cls.__name__, parsed
            )
            vocab = file_json["model"]["vocab"]
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                      for m in file_json["model"]["merges"]]  # fmt: skip
        elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            try:
                vocab, merges = models.BPE.read_file(
                    str(folder / "vocab.json"), str(folder / "merges.txt")
                )
            except Exception as e:
                raise TokenizerError(
                    f"{folder}: vocab.json / merges.txt unreadable ({e})"
                ) from None
        else:
            raise TokenizerError(
                f"{folder}: no tokenizer.json, nor vocab.json + merges.txt: a GPT-2/OPT "
                "tokenizer needs one of them (copy them from the checkpoint's hub repo)"
            )
        backend = Tokenizer(
            models.BPE(
                vocab=vocab,
                merges=merges,
                dropout=None,
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
            )
        )
        prefix = bool(config.get("add_prefix_space", False))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
        backend.decoder = decoders.ByteLevel()
        config.setdefault("unk_token", "<|endoftext|>")
        config.setdefault("bos_token", "<|endoftext|>")
        config.setdefault("eos_token", "<|endoftext|>")
        _finish(backend, config, added, post, file_json)
        return cls(backend, config, str(path_or_id))


class T5Tokenizer(_Tokenizer):
    """transformers' T5Tokenizer: SentencePiece Unigram, the tokenizer of Flan-T5
    (blip2-flan-t5-*). Sentinels <extra_id_0..99> sit at the end of the vocabulary in reverse
    order; every text gets </s> appended.

    5.23 rebuilds the pipeline from the vocabulary whatever tokenizer.json says: Unigram
    (unk id 2) + the file's Precompiled normalizer only (no other normalizer survives) +
    WhitespaceSplit and Metaspace("▁", prepend "always") + Metaspace decoder, and always the
    post-processor `$A </s>` (pair `$A </s> $B </s>`, all type 0)."""

    @classmethod
    def from_pretrained(cls, path_or_id, **kwargs):
        """tokenizer.json with tokenizer_config.json (spiece.model alone is not read)."""
        import base64

        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

        from .hub import resolve

        folder = resolve(path_or_id)
        if not (folder / "tokenizer.json").exists():
            what = "only spiece.model" if (folder / "spiece.model").exists() else "no tokenizer"
            raise TokenizerError(
                f"{folder}: {what}, no tokenizer.json: minblip reads T5 tokenizers from "
                "tokenizer.json (make it once with transformers: "
                "T5Tokenizer.from_pretrained(folder).save_pretrained(folder))"
            )
        config, added, parsed = _load_config(folder, kwargs)
        file_json, _ = _read_tokenizer_json(
            folder / "tokenizer.json", "Unigram", cls.__name__, parsed
        )
        vocab = [tuple(v) for v in file_json["model"]["vocab"]]
        backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
        charsmap = _precompiled_charsmap(file_json.get("normalizer"))
        if charsmap is not None:
            backend.normalizer = normalizers.Precompiled(base64.b64decode(charsmap))
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            ]
        )
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        config.setdefault("eos_token", "</s>")
        config.setdefault("unk_token", "<unk>")
        config.setdefault("pad_token", "<pad>")
        if not config.get("extra_special_tokens"):
            n = int(config.get("extra_ids", 100))
            config["extra_special_tokens"] = [f"<extra_id_{i}>" for i in range(n)]
        _finish(backend, config, added, None, file_json, fixed_post=True)
        eos_id = backend.token_to_id(_token(config["eos_token"]))
        backend.post_processor = processors.TemplateProcessing(
            single=["$A", "</s>"],
            pair=["$A", "</s>", "$B", "</s>"],
            special_tokens=[("</s>", eos_id)],
        )
        return cls(backend, config, str(path_or_id))


def _precompiled_charsmap(normalizer):
    """The base64 SentencePiece charsmap of a Precompiled normalizer (alone or in a Sequence)."""
    if not normalizer:
        return None
    parts = normalizer["normalizers"] if normalizer.get("type") == "Sequence" else [normalizer]
    for part in parts:
        if part.get("type") == "Precompiled" and part.get("precompiled_charsmap"):
            return part["precompiled_charsmap"]
    return None


# transformers' TOKENIZER_MAPPING_NAMES for the model types minblip knows (5.23: "blip-2" maps
# to GPT2Tokenizer whatever the language model; real BLIP-2 folders name their class instead)
_BY_MODEL_TYPE = {
    "blip": "BertTokenizer",
    "bert": "BertTokenizer",
    "blip-2": "GPT2Tokenizer",
    "opt": "GPT2Tokenizer",
    "gpt2": "GPT2Tokenizer",
    "t5": "T5Tokenizer",
}
_CLASSES = {
    "BertTokenizer": BertTokenizer,
    "GPT2Tokenizer": GPT2Tokenizer,
    "T5Tokenizer": T5Tokenizer,
}


def load_tokenizer(path_or_id, **kwargs):
    """transformers' AutoTokenizer.from_pretrained for minblip's tokenizers: the class named by
    tokenizer_config.json's tokenizer_class ("...Fast" names the same class in 5.x), else by
    config.json's model_type."""
    from .hub import resolve

    folder = resolve(path_or_id)
    path = folder / "tokenizer_config.json"
    name = read_tokenizer_json(path).get("tokenizer_class") if path.exists() else None
    source = f"{path} tokenizer_class"
    if name is None and (folder / "config.json").exists():
        model_type = read_tokenizer_json(folder / "config.json").get("model_type")
        name = _BY_MODEL_TYPE.get(model_type)
        source = f"{folder / 'config.json'} model_type {model_type!r}"
        if name is None:
            raise TokenizerError(f"{source}: no tokenizer class known for this model type")
    if name is None:
        raise TokenizerError(
            f"{folder}: no tokenizer_config.json with a tokenizer_class and no config.json:"
            " cannot tell which tokenizer to build"
        )
    name = name.removesuffix("Fast")
    if name not in _CLASSES:
        raise TokenizerError(f"{source} is {name!r}: minblip has {sorted(_CLASSES)}")
    return _CLASSES[name].from_pretrained(folder, **kwargs)
