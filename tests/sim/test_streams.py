"""Payload packing of ``sim.streams`` (the driver and monitor run in tests/sim/test_cocotb_mac)."""

import random

import pytest

from sim.streams import pack_fields, to_signed, unpack_fields

FIELDS = {"a": {"offset": 0, "width": 8, "signed": True},
          "w": {"offset": 8, "width": 3, "signed": True},
          "last": {"offset": 11, "width": 1, "signed": False}}


def test_pack_places_each_field_at_its_offset():
    assert pack_fields(FIELDS, {"a": -1, "w": -2, "last": 1}) == 0b1_110_11111111
    assert pack_fields(FIELDS, {"a": -128, "w": 3, "last": 0}) == 0b0_011_10000000


def test_unpack_inverts_pack_over_every_extreme_and_random_values():
    rng = random.Random(3)
    cases = [{"a": a, "w": w, "last": last} for a in (-128, -1, 0, 127) for w in (-4, 0, 3)
             for last in (0, 1)]
    cases += [{"a": rng.randint(-128, 127), "w": rng.randint(-4, 3), "last": rng.randint(0, 1)}
              for _ in range(200)]
    for values in cases:
        assert unpack_fields(FIELDS, pack_fields(FIELDS, values)) == values


@pytest.mark.parametrize("values, message", [
    ({"a": 128, "w": 0, "last": 0}, r"field 'a' holds 128; allowed: integers in \[-128, 127\]"),
    ({"a": 0, "w": -5, "last": 0}, r"field 'w' holds -5; allowed: integers in \[-4, 3\]"),
    ({"a": 0, "w": 0, "last": 2}, r"field 'last' holds 2; allowed: integers in \[0, 1\]"),
])
def test_pack_refuses_values_that_do_not_fit(values, message):
    with pytest.raises(ValueError, match=message):
        pack_fields(FIELDS, values)


def test_to_signed():
    assert [to_signed(v, 4) for v in (0, 7, 8, 15, 16 + 3)] == [0, 7, -8, -1, 3]
