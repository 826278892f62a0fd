"""Host sampler: determinism, greedy equivalences, each filter, and the sampled
distribution against the expected probabilities."""
import numpy as np
import pytest

from py_engine.sampling import (Sampler, SamplingError, SamplingParams, apply_repetition_penalty,
                                candidate_probs, greedy)

LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 1.5, -3.0], dtype=np.float32)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def draw(params, n, seed=0, logits=LOGITS):
    s = Sampler(params, seed=seed)
    return np.array([s.sample(logits) for _ in range(n)])


def test_same_seed_same_choices_and_different_seed_differs():
    p = SamplingParams(temperature=1.0)
    a, b, c = draw(p, 200, seed=7), draw(p, 200, seed=7), draw(p, 200, seed=8)
    assert (a == b).all() and not (a == c).all()


def test_greedy_modes_agree():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.standard_normal(1000).astype(np.float32)
        want = int(np.argmax(x))
        assert greedy(x) == want
        assert Sampler(SamplingParams(temperature=0.0)).sample(x) == want
        assert Sampler(SamplingParams(temperature=1.3, top_k=1), seed=5).sample(x) == want
    tie = np.array([1.0, 3.0, 3.0, 0.0])
    assert Sampler(SamplingParams(top_k=1)).sample(tie) == 1  # lowest id wins a tie


def _chi_square(counts, probs):
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# Critical chi-square values at p = 0.001 by degrees of freedom (the seed is fixed, so each
# test is deterministic; the threshold says how unlikely a correct sampler is to fail).
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}
N = 4000
MAX_ABS_ERR = 0.03  # ~3.8 standard deviations of a frequency at N=4000 (sd <= 0.0079)


@pytest.mark.parametrize("params, expected", [
    (SamplingParams(temperature=1.0), softmax(LOGITS.astype(np.float64))),
    (SamplingParams(temperature=0.5), softmax(LOGITS.astype(np.float64) / 0.5)),
    (SamplingParams(temperature=1.0, top_k=3), None),
    (SamplingParams(temperature=1.0, top_p=0.8), None),
    (SamplingParams(temperature=1.0, min_p=0.2), None),
])
def test_sampled_frequencies_match_expected_probabilities(params, expected):
    if expected is None:
        ids, probs = candidate_probs(LOGITS, params)
        expected = np.zeros(LOGITS.size)
        expected[ids] = probs
    samples = draw(params, N, seed=123)
    counts = np.bincount(samples, minlength=LOGITS.size).astype(np.float64)
    assert counts[expected == 0].sum() == 0, "a filtered-out token was sampled"
    support = expected > 0
    dof = int(support.sum()) - 1
    assert _chi_square(counts[support], expected[support]) < CHI2_999[dof]
    assert np.abs(counts / N - expected).max() < MAX_ABS_ERR


def test_filters_keep_the_right_sets():
    p = softmax(LOGITS.astype(np.float64))
    order = [0, 6, 1, 2, 3, 4, 5, 7]  # ids by decreasing logit
    ids, _ = candidate_probs(LOGITS, SamplingParams(top_k=3))
    assert list(ids) == order[:3]
    ids, _ = candidate_probs(LOGITS, SamplingParams(top_p=0.8))
    mass = np.cumsum(p[order])
    assert list(ids) == order[: int(np.searchsorted(mass, 0.8)) + 1] and mass[len(ids) - 2] < 0.8 <= mass[len(ids) - 1]
    ids, probs = candidate_probs(LOGITS, SamplingParams(min_p=0.2))
    assert set(ids) == {i for i in range(8) if p[i] >= 0.2 * p.max()}
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    ids, _ = candidate_probs(LOGITS, SamplingParams(top_p=1e-9))
    assert list(ids) == [0]  # top-p always keeps at least one token


def test_repetition_penalty():
    x = np.array([2.0, -1.0, 0.5, 3.0])
    out = apply_repetition_penalty(x, [0, 1, 1], 2.0)
    np.testing.assert_array_equal(out, [1.0, -2.0, 0.5, 3.0])
    np.testing.assert_array_equal(x, [2.0, -1.0, 0.5, 3.0])  # input untouched
    # greedy with a penalty moves away from the repeated argmax
    s = Sampler(SamplingParams(temperature=0, repetition_penalty=4.0))
    assert s.sample([3.0, 2.0], previous_ids=[0]) == 1
    # penalty_last_n: only the most recent ids count
    s = Sampler(SamplingParams(temperature=0, repetition_penalty=4.0, penalty_last_n=1))
    assert s.sample([3.0, 2.0], previous_ids=[0, 1]) == 0
    with pytest.raises(SamplingError, match="previous token id outside"):
        apply_repetition_penalty(x, [4], 1.5)


def test_invalid_parameters_and_logits():
    for bad in (dict(temperature=-1), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5),
                dict(min_p=2.0), dict(repetition_penalty=0.0)):
        with pytest.raises(SamplingError, match="sampling: "):
            Sampler(SamplingParams(**bad))
    with pytest.raises(SamplingError, match="NaN"):
        Sampler().sample(np.array([0.0, np.nan]))
    with pytest.raises(SamplingError, match="empty"):
        Sampler().sample(np.array([]))
    with pytest.raises(SamplingError, match="no finite logit"):
        Sampler().sample(np.array([-np.inf, -np.inf]))
    # masked (-inf) tokens are never drawn
    x = np.array([0.0, -np.inf, 0.0])
    assert 1 not in draw(SamplingParams(), 300, logits=x)


def test_top_k_on_a_large_vocabulary_is_fast_and_exact():
    import time
    x = np.random.default_rng(1).standard_normal(49152).astype(np.float32)
    ids, _ = candidate_probs(x, SamplingParams(top_k=40))
    assert list(ids) == list(np.argsort(-x, kind="stable")[:40])
    s = Sampler(SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05), seed=0)
    t0 = time.perf_counter()
    for _ in range(20):
        assert s.sample(x) in set(ids.tolist())
    assert (time.perf_counter() - t0) / 20 < 0.01  # per token, well below a decode step
