"""Which variant serves: the fastest of the agreeing candidates, from injected timings (no platform needed)."""

from __future__ import annotations

import pytest

from training.variants import VARIANTS, choose_fastest


def test_the_fastest_agreeing_variant_serves_whatever_the_fixed_order_says() -> None:
    # The old fixed order put PT2E INT8 first; measured slower than compiled FP32 it must not serve.
    variant, reason = choose_fastest({"int8": 1.9, "compiled": 1.4, "fp32": 2.5, "openvino_fp32": 1.1})
    assert variant == "openvino_fp32"
    assert "batch-1 p50 1.10 ms" in reason and "compiled 1.40 ms" in reason and "int8 1.90 ms" in reason


@pytest.mark.parametrize("timings, expected", [
    ({"openvino_int8": 0.36, "openvino_fp32": 0.53, "fp32": 1.64}, "openvino_int8"),
    ({"openvino_int8": 0.9, "openvino_fp32": 0.53, "fp32": 1.64}, "openvino_fp32"),
    ({"fp32": 2.0}, "fp32"),
])
def test_choice_follows_the_measurement(timings: dict[str, float], expected: str) -> None:
    assert choose_fastest(timings)[0] == expected


def test_a_tie_goes_to_the_earlier_variant_and_no_candidate_is_an_error() -> None:
    assert choose_fastest({"fp32": 1.0, "openvino_int8": 1.0})[0] == "openvino_int8"
    assert VARIANTS[-1] == "fp32"
    with pytest.raises(ValueError, match="no candidate"):
        choose_fastest({})
