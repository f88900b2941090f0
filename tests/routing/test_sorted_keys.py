"""SortedKeys against a plain sorted list, across block splits and emptied blocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.sorted_keys import SortedKeys
from tests.routing.builders import PROPERTY

keys = st.integers(0, 60)
operations = st.lists(st.tuples(st.sampled_from(("add", "remove")), keys), max_size=300)


@PROPERTY
@given(initial=st.lists(keys, max_size=40), ops=operations, probe=keys)
def test_it_behaves_as_a_sorted_list(initial, ops, probe):
    held = SortedKeys(initial, block=4)  # small: operations split and empty blocks often
    model = sorted(initial)
    for op, key in ops:
        if op == "add":
            held.add(key)
            model.append(key)
            model.sort()
        elif key in model:
            held.remove(key)
            model.remove(key)
        else:
            with pytest.raises(KeyError):
                held.remove(key)
    assert list(held) == model and len(held) == len(model)
    assert list(held.descending()) == model[::-1]
    assert held.count_below(probe) == sum(1 for k in model if k < probe)
    assert list(held.descending_below(probe)) == [k for k in model[::-1] if k < probe]
    assert held.first() == (model[0] if model else None)
    assert held.last() == (model[-1] if model else None)
