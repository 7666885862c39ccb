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

_SPECIAL_NAMES = (
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "bos_token",
    "eos_token",
)


def _token(value):
    """A special token as a string (configs write either "[X]" or {"content": "[X]", ...})."""
    return value.get("content") if isinstance(value, dict) else value


class BertTokenizer:
    """transformers' BertTokenizer (the tokenizers-backed one) for BLIP checkpoints."""

    def __init__(self, backend, config, name_or_path=None):
        self._tok, self.name_or_path = backend, name_or_path
        self.model_max_length = int(config.get("model_max_length", 512))
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        for name in _SPECIAL_NAMES:
            setattr(self, name, _token(config.get(name)))
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        self.additional_special_tokens = [_token(t) for t in extra]

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path_or_id, **kwargs):
        """tokenizer.json (+ tokenizer_config.json) from a folder or hub id; vocab.txt otherwise."""
        from .hub import resolve

        folder = resolve(path_or_id)
        config = (
            _read_json(folder / "tokenizer_config.json")
            if (folder / "tokenizer_config.json").exists()
            else {}
        )
        if (folder / "special_tokens_map.json").exists():  # older saves keep the specials here
            for k, v in _read_json(folder / "special_tokens_map.json").items():
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
        elif (folder / "vocab.txt").exists():
            backend = _from_vocab(folder / "vocab.txt", config)
        else:
            raise TokenizerError(f"{folder}: no tokenizer.json or vocab.txt")
        return cls(backend, config, str(path_or_id))

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
        return_attention_mask=True,
        return_token_type_ids=True,
        pad_to_multiple_of=None,
        return_special_tokens_mask=False,
        return_offsets_mapping=False,
        return_length=False,
        verbose=True,
        **kwargs,
    ):
        """Encode a string or a list of strings -> BatchFeature(input_ids, token_type_ids,
        attention_mask, and on request special_tokens_mask, offset_mapping (character spans),
        length (tokens per row, padding included)): lists, or int64 arrays with
        return_tensors="np". verbose is accepted, as transformers': it only gates warnings."""
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
        encodings = self._encode(
            texts, pairs, padding, truncation, max_length, add_special_tokens, pad_to_multiple_of
        )
        data = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
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

    def _encode(self, texts, pairs, padding, truncation, max_length, add_special_tokens, multiple):
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
        truncate = truncation not in (None, False, "do_not_truncate")
        if truncation is None and max_length is not None and padding != "max_length":
            truncate = True  # transformers: max_length alone implies longest_first truncation
        limit = max_length if max_length is not None else self.model_max_length
        try:
            if truncate:
                strategy = "longest_first" if truncation in (True, None) else truncation
                tok.enable_truncation(limit, strategy=strategy, direction=self.truncation_side)
            if padding in (True, "longest", "max_length"):
                tok.enable_padding(
                    direction=self.padding_side,
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
        ids = guards.token_ids(token_ids)
        text = self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return _clean_up(text) if clean else text

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


def _read_json(path):
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
    specials += [_token(config.get(k)) for k in _SPECIAL_NAMES if config.get(k)]
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
