"""The benchmark reads histories spread over the whole run, not only its first jobs."""

from __future__ import annotations

from bench.fleet import history_sample


def test_the_sample_spans_the_run_from_first_to_last() -> None:
    ids = [f"w{i}" for i in range(2000)]
    sample = history_sample(ids, 20)
    assert len(sample) == len(set(sample)) == 20
    assert sample[0] == "w0" and sample[-1] == "w1999"
    positions = [ids.index(w) for w in sample]
    assert positions == sorted(positions)
    assert max(b - a for a, b in zip(positions, positions[1:], strict=False)) <= 106


def test_a_short_run_is_read_whole() -> None:
    assert history_sample(["a", "b", "c"], 20) == ["a", "b", "c"]
