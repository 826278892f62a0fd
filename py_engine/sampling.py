"""Host-side token sampling in numpy (also the reference for the GPU sampler).

Order of the steps (Hugging Face's): repetition penalty -> temperature -> top-k -> top-p
-> min-p -> draw. temperature == 0 or top_k == 1 is greedy (argmax, lowest id on ties).
All randomness comes from one `numpy.random.default_rng(seed)`, so a seed fixes the choices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class SamplingError(ValueError):
    """Invalid sampling parameters or logits."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0                   # 0 = off
    top_p: float = 1.0               # 1.0 = off
    min_p: float = 0.0               # 0.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off
    penalty_last_n: int = 64         # how many recent tokens the penalty looks at (0 = all)

    def validate(self) -> "SamplingParams":
        if not self.temperature >= 0:
            raise SamplingError(f"sampling: temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise SamplingError(f"sampling: top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"sampling: top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise SamplingError(f"sampling: min_p must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            raise SamplingError(f"sampling: repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.penalty_last_n < 0:
            raise SamplingError(f"sampling: penalty_last_n must be >= 0, got {self.penalty_last_n}")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def apply_repetition_penalty(logits: np.ndarray, previous_ids, penalty: float) -> np.ndarray:
    """HF/CTRL rule: for each id seen, positive logits are divided by `penalty`, negative
    ones multiplied, so the token always becomes less likely for penalty > 1."""
    if penalty == 1.0 or len(previous_ids) == 0:
        return logits
    ids = np.unique(np.asarray(previous_ids, dtype=np.int64))
    if ids.min() < 0 or ids.max() >= logits.size:
        raise SamplingError(f"sampling: previous token id outside 0..{logits.size - 1}")
    out = logits.copy()
    sel = out[ids]
    out[ids] = np.where(sel > 0, sel / penalty, sel * penalty)
    return out


def candidate_probs(logits, params: SamplingParams, previous_ids=()) -> tuple:
    """(ids, probs): the tokens that survive the filters and their renormalized
    probabilities, ids sorted by decreasing probability (ties: lower id first).
    This is the exact distribution `Sampler.sample` draws from (non-greedy)."""
    x = np.asarray(logits, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise SamplingError("sampling: empty logits")
    if np.isnan(x).any():
        raise SamplingError("sampling: logits contain NaN")
    n = params.penalty_last_n
    recent = previous_ids[-n:] if n else previous_ids
    x = apply_repetition_penalty(x, list(recent), params.repetition_penalty)
    return _filter(np.arange(x.size), x, params)


def candidate_probs_from(ids, values, params: SamplingParams) -> tuple:
    """candidate_probs of a whole row, from only its largest logits (`ids`, `values`): the
    same result whenever they include the row's top_k largest (ties: lower ids; the whole row
    when it is shorter) and there is no repetition penalty (py_engine/ops/topk.py reads such
    candidates from the GPU)."""
    if params.repetition_penalty != 1.0 or not params.top_k:
        raise SamplingError("sampling: candidates need top_k > 0 and no repetition penalty")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if x.size == 0 or x.size != ids.size:
        raise SamplingError(f"sampling: {x.size} candidate logits for {ids.size} ids")
    if np.isnan(x).any():
        raise SamplingError("sampling: logits contain NaN")
    return _filter(ids, x, params)


def _filter(ids, x, params: SamplingParams) -> tuple:
    """temperature -> top-k -> top-p -> min-p over logits x of tokens `ids` (ids distinct)."""
    x = x / params.temperature
    if params.top_k and params.top_k < x.size:
        # Partial selection (sorting a 49k vocabulary per token is the costly part), then the
        # k largest by (logit, lower id on ties), so the chosen set never depends on the order.
        kth = np.partition(x, x.size - params.top_k)[x.size - params.top_k]
        above = np.nonzero(x > kth)[0]
        ties = np.nonzero(x == kth)[0]
        ties = ties[np.argsort(ids[ties], kind="stable")][: params.top_k - above.size]
        part = np.concatenate([above, ties])
    else:
        part = np.arange(x.size)
    order = part[np.lexsort((ids[part], -x[part]))]  # by logit, then by id on ties
    z = x[order]
    if not np.isfinite(z[0]):
        raise SamplingError("sampling: no finite logit to sample from")
    p = np.exp(z - z[0])
    p /= p.sum()
    if params.top_p < 1.0:
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        keep = int(np.searchsorted(np.cumsum(p), params.top_p)) + 1
        order, p = order[:keep], p[:keep]
    if params.min_p > 0.0:
        keep = p >= params.min_p * p[0]
        order, p = order[keep], p[keep]
    return ids[order], p / p.sum()


class Sampler:
    """Draws one token per call; same seed and inputs -> same sequence of choices."""

    def __init__(self, params: SamplingParams | None = None, seed: int | None = 0):
        self.params = (params or SamplingParams()).validate()
        self.rng = np.random.default_rng(seed)

    def sample(self, logits, previous_ids=()) -> int:
        p = self.params
        if p.greedy:
            x = np.asarray(logits, dtype=np.float64).reshape(-1)
            if x.size == 0:
                raise SamplingError("sampling: empty logits")
            recent = previous_ids[-p.penalty_last_n:] if p.penalty_last_n else previous_ids
            return int(np.argmax(apply_repetition_penalty(x, list(recent), p.repetition_penalty)))
        return draw(*candidate_probs(logits, p, previous_ids), self.next_uniform())

    def next_uniform(self) -> float:
        """The uniform number of the next draw (the GPU sampler is handed these, in order)."""
        return float(self.rng.random())


def draw(ids, probs, u: float) -> int:
    """The token that u in [0, 1) picks: the first whose cumulative probability exceeds u times
    the total (if rounding leaves none, the last with a nonzero probability). shaders/topk.wgsl's
    `sample` applies the same rule in float32."""
    c = np.cumsum(probs)
    i = int(np.searchsorted(c, u * c[-1], side="right"))
    if i >= len(ids):
        i = int(np.flatnonzero(np.asarray(probs) > 0)[-1])
    return int(ids[i])


def greedy(logits) -> int:
    return int(np.argmax(np.asarray(logits).reshape(-1)))
