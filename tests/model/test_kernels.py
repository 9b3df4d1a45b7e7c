"""Repeated binary kernels: distinct kernels and rows against set-based references, and the
reuse mapping's golden model equal to the plain convolution with exactly the counted work."""

import numpy as np
import pytest

from model import kernels as K
from model import ops
from model.quant import pack_pm1


def bits_to_pm1(bits):
    return 1 - 2 * np.asarray(bits, dtype=np.int64)


def reference_kernel_counts(bits):
    """Per channel: distinct kernels, and distinct up to sign, by sets of +/-1 tuples."""
    m, c = bits.shape[:2]
    distinct = up_to_sign = 0
    for ch in range(c):
        kernels = {tuple(bits_to_pm1(bits[i, ch]).ravel()) for i in range(m)}
        distinct += len(kernels)
        up_to_sign += len({max(k, tuple(-v for v in k)) for k in kernels})
    return distinct, up_to_sign


def reference_row_counts(words, bits):
    """Per channel over (m, r), and per (c, r) over m: distinct rows up to complement."""
    mask = (1 << bits) - 1
    m, c, r, _ = words.shape

    def key(row):
        row = tuple(int(v) for v in row)
        return min(row, tuple(v ^ mask for v in row))

    per_channel = sum(len({key(words[i, ch, j]) for i in range(m) for j in range(r)})
                      for ch in range(c))
    per_pe = sum(len({key(words[i, ch, j]) for i in range(m)}) for ch in range(c)
                 for j in range(r))
    return per_channel, per_pe


def test_hand_worked_repeats():
    rows = np.array([[0, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]])  # f1 = -f0, f2 = f0
    w = np.stack([np.stack([rows[i], rows[(i + 1) % 4]]) for i in range(4)])[:, None]
    # w: [4 filters, 1 channel, 2 rows, 3]
    stats = K.row_stats("binary", w)
    assert (stats.rows, stats.per_channel, stats.per_pe) == (8, 2, 4)
    kstats = K.kernel_stats("binary", w)
    assert (kstats.kernels, kstats.distinct, kstats.distinct_up_to_sign) == (4, 4, 3)


@pytest.mark.parametrize("seed", range(4))
def test_counts_equal_set_references(seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(12, 3, 3, 2))          # few patterns: many repeats
    assert (K.kernel_stats("binary", bits).distinct,
            K.kernel_stats("binary", bits).distinct_up_to_sign) == reference_kernel_counts(bits)
    stats = K.row_stats("binary", bits)
    assert (stats.per_channel, stats.per_pe) == reference_row_counts(bits, 1)
    words = rng.integers(0, 4, size=(10, 2, 3, 2))          # 2-lane words
    stats = K.row_stats("xnor", words, lanes=2)
    assert (stats.per_channel, stats.per_pe) == reference_row_counts(words, 2)
    # Kernels of an xnor layer are counted per +/-1 lane.
    lane_bits = (words[..., None] >> np.arange(2)) & 1               # [M, Cw, R, S, lanes]
    unpacked = np.moveaxis(lane_bits, -1, 2).reshape(10, 4, 3, 2)
    np.testing.assert_array_equal(K.unpacked_bits("xnor", words, 2), unpacked)
    assert (K.kernel_stats("xnor", words, 2).distinct,
            K.kernel_stats("xnor", words, 2).distinct_up_to_sign) == \
        reference_kernel_counts(unpacked)


CASES = [  # (height, width, kernel, stride, padding)
    (6, 7, 3, 1, 1), (5, 5, 3, 2, 1), (8, 8, 5, 1, 2), (4, 6, 2, 2, 0), (3, 3, 3, 1, 2),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scope", K.SCOPES)
def test_binary_reuse_mapping_equals_the_convolution(case, scope):
    height, width, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    w = rng.integers(0, 2, size=(9, 2, k, k))
    w[3] = w[0] ^ 1                                     # a negated filter
    x = rng.integers(-8, 8, size=(2, height, width))
    out, products, adds = K.reuse_conv2d("binary", x, w, stride=stride, padding=padding,
                                         a_bits=4, scope=scope)
    np.testing.assert_array_equal(out, ops.conv2d("binary", x, w, stride=stride,
                                                  padding=padding, a_bits=4))
    counts = K.reuse_counts("binary", w, height=height, width=width, stride=stride,
                            padding=padding, scope=scope)
    assert (counts.products, counts.adds) == (products, adds)
    assert products < counts.macs


@pytest.mark.parametrize("scope", K.SCOPES)
def test_xnor_reuse_mapping_equals_the_convolution_with_padding_excluded(scope):
    rng = np.random.default_rng(9)
    lanes = 3
    levels = 1 - 2 * rng.integers(0, 2, size=(6, 2, lanes, 3, 3))      # [M, Cw, L, R, S]
    levels[4] = -levels[1]
    w = pack_pm1(np.moveaxis(levels, 2, -1))                             # [M, Cw, R, S]
    x = pack_pm1(np.moveaxis(1 - 2 * rng.integers(0, 2, size=(2, lanes, 5, 6)), 1, -1))
    out, products, adds = K.reuse_conv2d("xnor", x, w, padding=1, a_bits=lanes, lanes=lanes,
                                         scope=scope)
    np.testing.assert_array_equal(out, ops.conv2d("xnor", x, w, padding=1, a_bits=lanes))
    counts = K.reuse_counts("xnor", w, height=5, width=6, padding=1, lanes=lanes, scope=scope)
    assert (counts.products, counts.adds) == (products, adds)


def test_extremes_all_equal_and_all_distinct():
    same = np.zeros((16, 1, 3, 3), dtype=np.int64)
    same[8:] = 1                                  # half the filters negated
    stats = K.row_stats("binary", same)
    assert (stats.per_channel, stats.per_pe) == (1, 3)   # one row up to sign (per r: 3)
    c = K.reuse_counts("binary", same, height=5, width=5, padding=1)
    taps = 3 * 5 - 2                              # one row over 5 columns, 2 taps padded
    assert c.macs == 16 * taps * (4 + 5 + 4)      # filter rows 0, 1, 2 see 4, 5, 4 rows
    assert c.products == 5 * taps                 # once per input row
    assert c.adds == 16 * (2 + 3 + 3 + 3 + 2) * 5
    # Every row distinct (packed words that never repeat): nothing saved, only adds cost.
    words = np.arange(1, 17, dtype=np.int64).reshape(16, 1, 1, 1)
    c = K.reuse_counts("xnor", words, height=4, width=4, lanes=8)
    assert c.products == c.macs and c.saved == 0 and c.net_saved == -1


@pytest.mark.parametrize("call, message", [
    (lambda: K.row_stats("ternary", np.zeros((2, 1, 3, 3))), "no \\+/-1 weights"),
    (lambda: K.row_stats("binary", np.full((2, 1, 3, 3), 2)), "exceed 1 bit"),
    (lambda: K.row_stats("xnor", np.full((2, 1, 3, 3), 8), lanes=3), "exceed 3 bit"),
    (lambda: K.reuse_counts("binary", np.zeros((2, 1, 3, 3)), height=4, width=4, scope="x"),
     "unknown reuse scope 'x'"),
    (lambda: K.kernel_stats("binary", np.zeros((2, 3))), "\\[M, C, R, S\\]"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
