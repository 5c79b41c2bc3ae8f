"""Which variant serves: the fastest of the agreeing candidates, from injected timings (no platform needed)."""

from __future__ import annotations

import pytest

from training.artifacts import LoadedVersion
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


@pytest.mark.parametrize("variant", ["bf16", "openvino_bf16"])
def test_a_bf16_variant_training_refused_never_becomes_a_candidate(tmp_path, variant: str) -> None:  # noqa: ANN001
    from training.cpu import CpuCapabilities
    from training.model import CustomVGG, ModelConfig
    from training.variants import VariantBuilder

    loaded = LoadedVersion("m", "1", "run", CustomVGG(ModelConfig(width=0.125, image_size=32)).eval(),
                           run_tags={"bf16_gate": "refused", "openvino_bf16_gate": "refused"})
    builder = VariantBuilder(loaded, tmp_path, CpuCapabilities(avx512=True, avx512_bf16=True, amx=True, vnni=True),
                             compile_torch=False, buckets=())
    builder._irs = (object(), None, "given")  # the IRs are not what is under test  # noqa: SLF001
    outcome = builder.build(variant)
    assert isinstance(outcome, str) and outcome.startswith("refused: training's accuracy gate refused"), outcome
    tag = {"bf16": "bf16_gate", "openvino_bf16": "openvino_bf16_gate"}[variant]
    assert f"{tag}=refused" in outcome
    accepted = LoadedVersion("m", "1", "run", loaded.model, run_tags={"bf16_gate": "accepted"})
    if variant == "bf16":  # accepted: a candidate where this host's BF16 probe passes, a probe refusal otherwise
        again = VariantBuilder(accepted, tmp_path, builder.caps, compile_torch=False, buckets=()).build("bf16")
        assert not isinstance(again, str) or "probe" in again, again
