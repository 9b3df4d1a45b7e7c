"""Named conventions of the quantizers: the papers' (the default) and two frameworks'.

Where frameworks disagree with the papers, ``model.quant`` follows the paper by default and
reproduces a framework on request with ``profile=``. Every profile computes in float64 (the
frameworks compute in float32, so values within a float32 ulp of a threshold may land
differently; the *rules* below are reproduced exactly).

``paper`` (default; DESIGN.md section 3 and REFERENCES.md)
    sign(0) = +1 and the sign gradient is ``g * 1{|x| <= 1}``; ternary threshold
    ``D = 0.7 * mean|W|``, strict mask ``|w| > D``, scale the mean of ``|w| > D`` (0 with a
    warning when that set is empty), identity gradient (TWN); DoReFa weights (k > 1)
    ``2 quantize_k(tanh(w) / (2 max|tanh w|) + 1/2) - 1`` and (k = 1) ``sign(w) * mean|w|``;
    DoReFa activations ``quantize_k(clip(x, 0, 1))`` with gradient ``g * 1{0 <= x <= 1}``.

``tensorlayer`` (``tensorlayer/layers/utils.py``, ``tensorlayer/activation.py``)
    - binarize: ``tf.sign``, so sign(0) = 0; a 0 level has no binary code, so binarize
      returns a ``ternary`` QTensor (codes -1, 0, +1) in this profile.
    - sign gradient: ``clip(g, -1, 1)`` (the gradient is clipped, not masked).
    - ternary: the mask is ``sign(sign(w + D) + sign(w - D))``, i.e. inclusive ``|w| >= D``,
      while the scale stays strict (mean of ``|w| > D``); TensorLayer's scale is NaN when
      nothing exceeds D, we keep 0 with a warning. Its gradient (through the scale and the
      threshold) is not reproduced.
    - DoReFa weights (k > 1): ``2 round(clip(w/2 + 1/2, 0, 1) n) / n - 1`` (no tanh, no max),
      gradient ``g * 1{|w| <= 1}``; (k = 1) ``tf.sign(w / E) * E`` with ``E = mean|w|``, a
      ``ternary`` QTensor (NaN in TensorLayer when every weight is 0; we give codes 0, scale 0
      and a warning).
    - DoReFa activations: ``round(min(1, |x|) n) / n`` (``cabs``: |x|, not clip), gradient
      ``g * sign(x) * 1{|x| < 1}`` (``tf.minimum`` gives the tie to the constant 1).

``larq`` (``larq/quantizers.py``, ``larq/math.py``)
    - binarize (``ste_sign``): sign(0) = +1, gradient ``g * 1{|x| <= 1}``: as the paper.
    - ternary (``SteTern``): fixed threshold ``threshold_value = 0.05`` by default (or
      ``0.7 * mean|W|`` with ``ternary_weight_networks=True``, our ``threshold="twn"``),
      inclusive mask ``sign(sign(w + D) + sign(w - D))``, no scale (1), gradient
      ``g * 1{|w| <= 1}``.
    - DoReFa weights: the tanh/max formula for *every* k, k = 1 included (no
      ``sign(w) * mean|w|`` case): at k = 1, w = 0 gives ``round(1/2) = 0``, level -1; a zero
      max is handled by ``divide_no_nan`` (normalised weights 0), as our default does.
    - DoReFa activations: as the paper.
"""

from __future__ import annotations

__all__ = ["PAPER", "TENSORLAYER", "LARQ", "PROFILES", "check_profile"]

#: The papers' definitions (DESIGN.md section 3); the default of every quantizer.
PAPER = "paper"
#: TensorLayer 2.x (``tl.layers.BinaryConv2d``, ``TernaryConv2d``, ``DorefaConv2d``).
TENSORLAYER = "tensorlayer"
#: Larq (``lq.quantizers.SteSign``, ``SteTern``, ``DoReFa``).
LARQ = "larq"

#: Every profile name.
PROFILES = (PAPER, TENSORLAYER, LARQ)


def check_profile(profile, *, what: str, allowed: tuple[str, ...] = PROFILES) -> str:
    """Return ``profile`` if ``what`` supports it; else raise ``ValueError`` naming the allowed."""
    if profile not in allowed:
        raise ValueError(f"unknown profile {profile!r} for {what}; allowed: {', '.join(allowed)}")
    return profile
