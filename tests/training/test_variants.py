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


# --- the remembered choice: a restarted worker (or the gate, again) does not race the candidates again ------


class _Counting:
    """Counts the variants built and the timing rounds run by :func:`training.variants.select`."""

    def __init__(self, monkeypatch) -> None:  # noqa: ANN001
        import threading

        from training import openvino as tov
        from training import variants

        self.built: list[str] = []
        self.timed = 0
        lock = threading.Lock()
        build, timing = variants.VariantBuilder.build, variants.interleaved_latencies_ms

        def counted_build(builder, variant: str):  # noqa: ANN001, ANN202
            with lock:
                self.built.append(variant)
            return build(builder, variant)

        def counted_timing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            with lock:
                self.timed += 1
            return timing(*args, **kwargs)

        monkeypatch.setattr(variants.VariantBuilder, "build", counted_build)
        monkeypatch.setattr(variants, "interleaved_latencies_ms", counted_timing)
        # Two real candidates that agree (FP32 eager and the OpenVINO FP32 IR), none of the slow builds.
        monkeypatch.setattr(variants, "VARIANTS", ("openvino_fp32", "int8", "fp32"))
        irs: dict[int, object] = {}  # one export per model (each costs a second)

        def ir_pair(builder):  # noqa: ANN001, ANN202
            with lock:
                if id(builder.fp32) not in irs:
                    irs[id(builder.fp32)] = tov.export_ir(builder.fp32)
                return irs[id(builder.fp32)], None, "test"

        monkeypatch.setattr(variants.VariantBuilder, "_ir_pair", ir_pair)

    def reset(self) -> None:
        self.built, self.timed = [], 0


@pytest.fixture
def counting(monkeypatch, patched_environ):  # noqa: ANN001, ANN201
    with patched_environ({"MLOPS_SERVE_TIMING_ITERATIONS": "3", "MLOPS_SERVE_AGREEMENT_IMAGES": "16",
                          "MLOPS_SERVE_REMEMBER_CHOICE": "true", "MLOPS_SERVE_VARIANT": "auto"}):
        yield _Counting(monkeypatch)


def _loaded(version: str = "3") -> LoadedVersion:
    import torch

    from training.model import CustomVGG, ModelConfig

    torch.manual_seed(7)
    model = CustomVGG(ModelConfig(width=0.125, image_size=32)).eval()
    return LoadedVersion("pills/cls", version, f"run{version}", model)


def _sample():  # noqa: ANN201
    from training.data import synthetic_images

    return synthetic_images(8, 32, 11).images


def _avx2():  # noqa: ANN202
    from training.cpu import CpuCapabilities

    return CpuCapabilities(avx2=True, isa="avx2", model_name="test CPU")


def test_a_second_load_builds_only_the_remembered_variant_and_checks_it_again(tmp_path, counting) -> None:  # noqa: ANN001
    from training.variants import select

    loaded, memo = _loaded(), tmp_path / "variant-choices"
    first = select(loaded, tmp_path / "a", _avx2(), compile_torch=False, buckets=(), memo_dir=memo)
    assert counting.built == ["openvino_fp32", "int8", "fp32"] and counting.timed == 2  # batch 1 and batch 8
    assert set(first.p50_ms) == {"openvino_fp32", "fp32"}, first.checks
    [file] = memo.glob("*.json")
    assert file.name.startswith("pills_cls-v3-")
    counting.reset()

    again = select(loaded, tmp_path / "b", _avx2(), compile_torch=False, buckets=(), memo_dir=memo)
    assert counting.timed == 0 and counting.built == [first.variant]
    assert again.variant == first.variant and again.p50_ms == first.p50_ms
    assert f"remembered in {file.name}" in again.reason and first.reason in again.reason
    assert again.checks[again.variant].endswith("re-checked at this load"), again.checks
    x = _sample()
    assert again.candidate.forward(x)[1].argmax(1).tolist() == first.candidate.forward(x)[1].argmax(1).tolist()

    # Anything the choice depends on differs: chosen again, remembered beside the first.
    counting.reset()
    select(loaded, tmp_path / "c", _avx2(), compile_torch=False, buckets=(1, 8), memo_dir=memo)
    assert counting.timed == 2 and len(list(memo.glob("*.json"))) == 2
    counting.reset()
    select(_loaded("4"), tmp_path / "d", _avx2(), compile_torch=False, buckets=(), memo_dir=memo)
    assert counting.timed == 2 and len(list(memo.glob("*.json"))) == 3


def test_a_remembered_variant_that_no_longer_serves_is_chosen_again(tmp_path, counting) -> None:  # noqa: ANN001
    import json

    from training.variants import select

    loaded, memo = _loaded(), tmp_path / "memo"
    select(loaded, tmp_path / "a", _avx2(), compile_torch=False, buckets=(), memo_dir=memo)
    [file] = memo.glob("*.json")
    remembered = json.loads(file.read_text())
    file.write_text(json.dumps({**remembered, "variant": "int8"}))  # a variant this version cannot build
    counting.reset()
    chosen = select(loaded, tmp_path / "b", _avx2(), compile_torch=False, buckets=(), memo_dir=memo)
    assert counting.timed == 2 and chosen.variant in ("openvino_fp32", "fp32") and "remembered" not in chosen.reason
    assert json.loads(file.read_text())["variant"] == chosen.variant

    # Cut short (a crash mid-write cannot do this; a full disk or a person can), or missing a field.
    for broken in ('{"key": ', json.dumps({k: v for k, v in remembered.items() if k != "checks"})):
        file.write_text(broken)
        counting.reset()
        assert select(loaded, tmp_path / "c", _avx2(), compile_torch=False, buckets=(), memo_dir=memo).variant
        assert counting.timed == 2 and json.loads(file.read_text())["key"]["model"]["version"] == "3"


def test_workers_starting_together_choose_once(tmp_path, counting) -> None:  # noqa: ANN001
    from concurrent.futures import ThreadPoolExecutor

    from training.variants import select

    loaded, memo = _loaded(), tmp_path / "memo"
    with ThreadPoolExecutor(3) as pool:
        chosen = list(pool.map(lambda i: select(loaded, tmp_path / str(i), _avx2(), compile_torch=False, buckets=(),
                                                memo_dir=memo), range(3)))
    assert counting.timed == 2, "more than one worker timed the candidates"
    assert len({c.variant for c in chosen}) == 1 and sum("remembered in" in c.reason for c in chosen) == 2


def test_without_memory_or_a_usable_directory_every_load_chooses(tmp_path, counting, patched_environ) -> None:  # noqa: ANN001
    from training.variants import select

    loaded, blocked = _loaded(), tmp_path / "not-a-directory"
    blocked.write_text("")  # the directory cannot be made: chosen, no error
    assert select(loaded, tmp_path / "a", _avx2(), compile_torch=False, buckets=(), memo_dir=blocked).variant
    assert counting.timed == 2
    with patched_environ({"MLOPS_SERVE_REMEMBER_CHOICE": "false"}):
        for _ in range(2):
            select(loaded, tmp_path / "b", _avx2(), compile_torch=False, buckets=(), memo_dir=tmp_path / "off")
    assert counting.timed == 6 and not (tmp_path / "off").exists()
