"""Which variant serves: the fastest of the agreeing candidates, from injected timings (no platform needed)."""

from __future__ import annotations

import pytest

from training.variants import VARIANTS, choose_fastest


def t(batch_1: float, batch_8: float) -> dict[str, float]:
    return {"batch_1": batch_1, "batch_8": batch_8, "score": batch_1 + batch_8}


def test_the_fastest_agreeing_variant_serves_whatever_the_fixed_order_says() -> None:
    # The old fixed order put PT2E INT8 first; measured slower than compiled FP32 it must not serve.
    variant, reason = choose_fastest({"int8": t(1.9, 9.0), "compiled": t(1.4, 6.0), "fp32": t(2.5, 12.0),
                                      "openvino_fp32": t(1.1, 4.0)})
    assert variant == "openvino_fp32"
    assert "openvino_fp32 1.10 + 4.00 ms" in reason and "compiled 1.40 + 6.00 ms" in reason and "int8 1.90" in reason


@pytest.mark.parametrize("timings, expected", [
    ({"openvino_int8": t(0.36, 1.2), "openvino_fp32": t(0.53, 2.9), "fp32": t(1.64, 8.0)}, "openvino_int8"),
    ({"openvino_int8": t(0.9, 3.5), "openvino_fp32": t(0.53, 2.9), "fp32": t(1.64, 8.0)}, "openvino_fp32"),
    # Fastest alone is not fastest when requests batch together: the sum decides.
    ({"openvino_bf16": t(0.30, 4.0), "openvino_int8": t(0.36, 1.2)}, "openvino_int8"),
    ({"fp32": t(2.0, 9.0)}, "fp32"),
])
def test_choice_follows_the_measurement(timings: dict[str, dict[str, float]], expected: str) -> None:
    assert choose_fastest(timings)[0] == expected


def test_a_tie_goes_to_the_earlier_variant_and_no_candidate_is_an_error() -> None:
    assert choose_fastest({"fp32": t(1.0, 2.0), "openvino_int8": t(1.5, 1.5)})[0] == "openvino_int8"
    assert VARIANTS[-1] == "fp32"
    with pytest.raises(ValueError, match="no candidate"):
        choose_fastest({})
