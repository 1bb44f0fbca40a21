"""Signed bytes tampered with at random, for the fuzz tests of signature readers."""

from __future__ import annotations

from hypothesis import strategies as st


def tampered(data: st.DataObject, original: bytes, *, rounds: int, cut: int, insert: int,
             empty: bytes, byte_values: st.SearchStrategy[int] | None = None,
             insertions: st.SearchStrategy[bytes] | None = None) -> bytes:
    """``original`` after 1 to ``rounds`` edits drawn from ``data``.

    Each edit flips a byte, cuts up to ``cut`` bytes or inserts up to ``insert``
    random ones; with ``byte_values`` it may also set a byte to one of them,
    with ``insertions`` insert one of those. An emptied buffer becomes ``empty``
    (the readers have their own test for no bytes at all).
    """
    buffer = bytearray(original)
    actions = ["flip", "cut", "insert"]
    actions += ["set"] if byte_values is not None else []
    actions += ["insertion"] if insertions is not None else []
    for _ in range(data.draw(st.integers(1, rounds))):
        position = data.draw(st.integers(0, len(buffer) - 1))
        action = data.draw(st.sampled_from(actions))
        if action == "flip":
            buffer[position] ^= data.draw(st.integers(1, 255))
        elif action == "set" and byte_values is not None:
            buffer[position] = data.draw(byte_values)
        elif action == "cut":
            del buffer[position:position + data.draw(st.integers(1, cut))]
        elif action == "insertion" and insertions is not None:
            buffer[position:position] = data.draw(insertions)
        else:
            buffer[position:position] = data.draw(st.binary(min_size=1, max_size=insert))
        if not buffer:
            buffer = bytearray(empty)
    return bytes(buffer)
