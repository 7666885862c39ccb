"""The one table of tolerances, with where each number comes from.

Bars are max abs error against transformers' own outputs (rtol 0: a relative term would let large
activations hide real errors). They come from the issues:
- fp32, tiny configs: 1e-5 at every module. Measured on the vision cases: <= 4.8e-6 (activations
  are O(1) by construction of minblip.testing.random_weights, so 1e-5 is ~100 float32 ulps).
- fp32, full-size configs: 1e-4 (12 layers and 768-3072-wide sums accumulate in a different order
  from torch's oneDNN/MKL kernels).
- float64 (transformers run after model.double()): 1e-10. Measured: ~3e-15.
"""

FP32_TINY = dict(atol=1e-5, rtol=0.0)
FP32_FULL = dict(atol=1e-4, rtol=0.0)
FP64 = dict(atol=1e-10, rtol=0.0)


def for_case(meta, full_size):
    if meta["dtype"] == "float64":
        return FP64
    return FP32_FULL if full_size else FP32_TINY


# Logits: the issues' bar for a language model's output is 1e-4 in fp32 (every other module
# 1e-5). A 99-word head over 32-wide states gives logits up to |7| with random weights, where the
# sum order of the head's dot products alone moves them by ~1e-5 (measured 1.2e-5 on
# golden/blip2_generation's T5 cases). The same bar serves generation scores:
# Generation scores (per-step log-probabilities / processed scores, raw logits, beam
# sequences_scores) live on the logits' scale: they are logits minus a log-sum-exp, summed over
# steps for beams. Values reach |20| and more, where a float32 ulp is ~2e-6, so the issues' logits
# bar applies: 1e-4. Measured: <= 1.2e-5. Token ids are always compared exactly.
FP32_LOGITS = dict(atol=1e-4, rtol=0.0)

# OPT at OPT-2.7b's widths (golden/opt/full_width_generate): with random weights the tied
# 2560-wide head gives logits up to |386|, where one float32 ulp is 3e-5. minblip in float64 is
# 1.2e-4 from transformers' float32 logits there -- as far as minblip's float32 is -- so that
# is the reference's own float32 rounding, and 1e-4 sits below it. Bar: 3e-4 (10 ulps at 386).
FP32_WIDE_LOGITS = dict(atol=3e-4, rtol=0.0)
