"""A reward model computed in-process with Hugging Face transformers, with SGLang's semantics.

`/v1/score` (SGLang 0.5.x, `TokenizerManagerScoreMixin.score_request`, pointwise path): each
item is scored on the text `query + item` (or `item + query` with `item_first`) tokenised as ONE
string with the tokenizer's special tokens, so a token that straddles the boundary is the
tokenizer's own merge, not a split at the boundary. The scored distribution is the next token
after the last token of that text, read for `label_token_ids` (one list shared by all items, or
one list per item). With `apply_softmax` the label tokens' log-probabilities are softmaxed over
the labels alone (divided by `temperature` first); without it each is exp(log-probability over
the whole vocabulary). Pre-tokenised input (lists of ids) is concatenated as ids.

`/classify` (a sequence-classification head, e.g. a scalar reward model): the head's logits for
each text, one row per text.

All items of one request are one forward pass. When they share a token prefix longer than
`MIN_SHARED_PREFIX` (the query, for a sibling group of steps), the prefix runs once and its key
and value cache is repeated for the batch, so the query is not recomputed once per item.

Nothing here is thread-safe: the server calls one method at a time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_SHARED_PREFIX = 16  # below this, a second forward pass costs more than it saves
CAUSAL_LM = "causal-lm"
SEQUENCE_CLASSIFICATION = "sequence-classification"
HEADS = (CAUSAL_LM, SEQUENCE_CLASSIFICATION)
DTYPES = ("auto", "float32", "bfloat16", "float16")


class RequestError(ValueError):
    """A request the model cannot answer (the server returns it as HTTP 400)."""


@dataclass(frozen=True)
class ScoreResult:
    """One row of label probabilities per item, and the tokens read (summed over items)."""

    scores: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class ClassifyResult:
    """The head's logits for one text and its token count."""

    logits: list[float]
    prompt_tokens: int


def head_of(architectures: Sequence[str] | None) -> str:
    """The head a checkpoint's `architectures` declare: sequence classification when any ends
    in `ForSequenceClassification`, else a causal language model."""
    if any(a.endswith("ForSequenceClassification") for a in architectures or ()):
        return SEQUENCE_CLASSIFICATION
    return CAUSAL_LM


def label_scores(
    logprobs: Sequence[float], apply_softmax: bool, temperature: float = 1.0
) -> list[float]:
    """SGLang's `_convert_logprobs_to_scores` over the label tokens' log-probabilities."""
    if apply_softmax:
        top = max(logprobs)
        weights = [math.exp((lp - top) / temperature) for lp in logprobs]
        total = sum(weights)
        return [w / total for w in weights]
    return [math.exp(lp) if lp != -math.inf else 0.0 for lp in logprobs]


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all `sequences` share, leaving every sequence at least one
    token of its own (the last token's logits are the ones read)."""
    if not sequences:
        return 0
    limit = min(len(s) for s in sequences) - 1
    length = 0
    first = sequences[0]
    while length < limit and all(s[length] == first[length] for s in sequences[1:]):
        length += 1
    return max(length, 0)


class RewardModel:
    """A tokenizer and a model (causal LM or sequence-classification head) on one device."""

    def __init__(self, model: Any, tokenizer: Any, *, head: str, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.head = head
        self.device = device
        self.vocab_size = int(model.config.vocab_size)

    @classmethod
    def load(
        cls, path: str, *, device: str = "cpu", dtype: str = "float32", head: str | None = None
    ) -> RewardModel:
        """Load `path` (a local folder or a hub id). `head` None: read from its config.

        float32 by default: in bfloat16 the logits of one text move by tenths depending on
        what else is in its batch (scores by a few hundredths), so a score would depend on
        its siblings."""
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        config = AutoConfig.from_pretrained(path)
        head = head or head_of(getattr(config, "architectures", None))
        loader = AutoModelForCausalLM if head == CAUSAL_LM else AutoModelForSequenceClassification
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = loader.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, head=head, device=device)

    # -- tokens ----------------------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    @property
    def max_model_len(self) -> int:
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) else -1

    # -- /v1/score -------------------------------------------------------------------------

    def score(
        self,
        query: str | list[int],
        items: str | list[str] | list[list[int]],
        label_token_ids: list[int] | list[list[int]],
        *,
        apply_softmax: bool = False,
        item_first: bool = False,
        temperature: float = 1.0,
    ) -> ScoreResult:
        if self.head != CAUSAL_LM:
            raise RequestError(
                "/v1/score needs a causal language model; this server loaded a "
                "sequence-classification head (use /classify)"
            )
        item_list: list[Any] = [items] if isinstance(items, str) else list(items)
        if not item_list:
            raise RequestError("items must not be empty")
        labels = self._labels_per_item(label_token_ids, len(item_list))
        sequences = [self._sequence(query, item, item_first) for item in item_list]
        logprobs = self._next_token_logprobs(sequences)
        rows = []
        for row, item_labels in zip(logprobs, labels, strict=True):
            picked = [float(row[token]) for token in item_labels]
            rows.append(label_scores(picked, apply_softmax, temperature))
        return ScoreResult(rows, sum(len(s) for s in sequences))

    def _labels_per_item(self, label_token_ids: Any, count: int) -> list[list[int]]:
        if not isinstance(label_token_ids, list) or not label_token_ids:
            raise RequestError("label_token_ids must be a non-empty list of token ids")
        if all(isinstance(t, list) for t in label_token_ids):
            if len(label_token_ids) != count:
                raise RequestError(
                    f"label_token_ids has {len(label_token_ids)} lists for {count} items"
                )
            per_item = label_token_ids
        else:
            per_item = [label_token_ids] * count
        for labels in per_item:
            for token in labels:
                if isinstance(token, bool) or not isinstance(token, int):
                    raise RequestError(f"label token id {token!r} is not an integer")
                if not 0 <= token < self.vocab_size:
                    raise RequestError(
                        f"label token id {token} is outside the vocabulary "
                        f"(0..{self.vocab_size - 1})"
                    )
        return per_item

    def _sequence(self, query: Any, item: Any, item_first: bool) -> list[int]:
        if isinstance(query, str) and isinstance(item, str):
            text = item + query if item_first else query + item
            return self.encode(text)
        if isinstance(query, list) and isinstance(item, list):
            ids = item + query if item_first else query + item
            if not all(isinstance(t, int) and 0 <= t < self.vocab_size for t in ids):
                raise RequestError("token ids must be integers inside the vocabulary")
            return ids
        raise RequestError("query and items must both be text or both be token ids")

    def _next_token_logprobs(self, sequences: list[list[int]]) -> Any:
        """log-softmax (float32, whole vocabulary) of the logits after each sequence's last
        token, one row per sequence."""
        import torch

        if any(not s for s in sequences):
            raise RequestError("an empty query + item has no next token to score")
        with torch.inference_mode():
            shared = shared_prefix_length(sequences) if len(sequences) > 1 else 0
            if shared >= MIN_SHARED_PREFIX:
                logits = self._logits_after_shared_prefix(sequences, shared)
            else:
                logits = self._last_logits(sequences, past=None, past_length=0)
            return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _logits_after_shared_prefix(self, sequences: list[list[int]], shared: int) -> Any:
        import torch

        prefix = torch.tensor([sequences[0][:shared]], device=self.device)
        out = self.model(input_ids=prefix, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        cache.batch_repeat_interleave(len(sequences))
        return self._last_logits([s[shared:] for s in sequences], past=cache, past_length=shared)

    def _last_logits(self, pieces: list[list[int]], *, past: Any, past_length: int) -> Any:
        """Logits after the last token of each piece (right-padded into one batch; padding at
        the end is never attended by the real tokens before it, and positions stay exact)."""
        import torch

        width = max(len(p) for p in pieces)
        pad = self._pad_id()
        ids = torch.full((len(pieces), width), pad, dtype=torch.long)
        mask = torch.zeros((len(pieces), past_length + width), dtype=torch.long)
        mask[:, :past_length] = 1
        for row, piece in enumerate(pieces):
            ids[row, : len(piece)] = torch.tensor(piece)
            mask[row, past_length : past_length + len(piece)] = 1
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            use_cache=past is not None,
            **({} if past is None else {self._cache_argument(): past}),
        )
        last = torch.tensor([len(p) - 1 for p in pieces], device=self.device)
        return out.logits[torch.arange(len(pieces), device=self.device), last]

    def _cache_argument(self) -> str:
        """transformers ≥ 5.2x names the key/value cache `cache`; earlier, `past_key_values`."""
        parameters = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def _pad_id(self) -> int:
        for value in (
            getattr(self.tokenizer, "pad_token_id", None),
            getattr(self.model.config, "pad_token_id", None),
            getattr(self.tokenizer, "eos_token_id", None),
        ):
            if isinstance(value, int):
                return value
        return 0

    # -- /classify -------------------------------------------------------------------------

    def classify(self, texts: Sequence[str]) -> list[ClassifyResult]:
        """The head's logits per text. One batch when the model knows its padding token (its
        head finds each text's last token by it); else one pass per text."""
        import torch

        if self.head != SEQUENCE_CLASSIFICATION:
            raise RequestError(
                "/classify needs a sequence-classification (reward) head; this server loaded a "
                "causal language model (use /v1/score)"
            )
        sequences = [self.encode(t) for t in texts]
        if any(not s for s in sequences):
            raise RequestError("an empty text has no token to classify")
        pad = getattr(self.model.config, "pad_token_id", None)
        batches = [sequences] if isinstance(pad, int) else [[s] for s in sequences]
        rows: list[list[float]] = []
        with torch.inference_mode():
            for batch in batches:
                width = max(len(s) for s in batch)
                ids = torch.full((len(batch), width), pad if pad is not None else 0)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, seq in enumerate(batch):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
                rows.extend(out.logits.float().cpu().tolist())
        return [ClassifyResult(r, len(s)) for r, s in zip(rows, sequences, strict=True)]
