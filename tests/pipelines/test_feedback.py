"""Feedback input: labels and CSV files, with clear errors for bad input (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.feedback import FeedbackError, Label, parse_label, read_labels


def test_parse_label() -> None:
    assert parse_label("good") == 0 and parse_label("Defective") == 1 and parse_label("1") == 1
    with pytest.raises(FeedbackError, match="unknown label 'broken'"):
        parse_label("broken")
    with pytest.raises(FeedbackError, match="unknown label '2'"):
        parse_label("2")


def test_read_labels(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text("request_id,item_index,label\nr1,0,good\nr1,1,defective\nr2,,1\n")
    assert read_labels(f) == [Label("r1", 0, 0), Label("r1", 1, 1), Label("r2", 0, 1)]


@pytest.mark.parametrize(
    "content,message",
    [
        ("request,label\nr1,good\n", r"missing column\(s\) \['request_id'\]"),
        ("request_id,item_index,label\nr1,x,good\n", "labels.csv:2: item_index 'x'"),
        ("request_id,item_index,label\nr1,0,good\n,0,good\n", "labels.csv:3: empty request_id"),
        ("request_id,item_index,label\nr1,0,meh\n", "labels.csv:2: unknown label 'meh'"),
        ("request_id,item_index,label\nr1,\u00b2,good\n", "labels.csv:2: item_index"),
        ("request_id,item_index,label\nr1,99999999999,good\n", "labels.csv:2: item_index '99999999999'"),
        ("request_id,item_index,label\nr1,0,good,extra\n", "labels.csv:2: more fields than the header"),
        ("request_id,item_index,label\nr\x001,0,good\n", "labels.csv:2"),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "labels.csv"
    f.write_text(content)
    with pytest.raises(FeedbackError, match=message):
        read_labels(f)


def test_a_file_that_is_not_utf8_text_is_named(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_bytes(b"request_id,item_index,label\nr1,0,\xff\xfe\n")
    with pytest.raises(FeedbackError, match="labels.csv: not UTF-8 text"):
        read_labels(f)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(
    st.binary(max_size=400),
    st.lists(st.lists(st.text(max_size=12), max_size=5), max_size=6).map(
        lambda rows: "request_id,item_index,label\n" + "\n".join(",".join(r) for r in rows)),
))
def test_any_file_gives_labels_or_one_feedback_error(tmp_path: Path, content: bytes | str) -> None:
    f = tmp_path / "fuzz.csv"
    f.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    try:
        labels = read_labels(f)
    except FeedbackError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        for label in labels:
            assert label.request_id.strip() and 0 <= label.item_index < 2**31 and label.label in (0, 1)


def test_labelled_examples_join_the_training_split_only() -> None:
    import torch

    from training.data import ImageSet, Shift, synthetic_images, synthetic_splits
    from training.train import with_extra

    splits = synthetic_splits(16, 8, 32, seed=0)
    extra = synthetic_images(5, 32, seed=1, shift=Shift(brightness=0.6))
    combined = with_extra(splits, ImageSet(extra.images, extra.labels, []))
    assert len(combined.train) == 21 and combined.val is splits.val
    assert torch.equal(combined.train.images[16:], extra.images) and torch.equal(combined.train.labels[16:],
                                                                                  extra.labels)
    assert combined.train.sources[16:] == ["labelled"] * 5
    assert with_extra(splits, None) is splits
    wrong = synthetic_images(2, 48, seed=1)
    with pytest.raises(ValueError, match=r"shape \(3, 48, 48\), the training images \(3, 32, 32\)"):
        with_extra(splits, wrong)


def test_the_holdout_split_is_stable_and_about_the_share() -> None:
    import torch

    from pipelines.feedback import LabelledExamples, held_out

    keys = [f"req{i // 4}:{i % 4}" for i in range(2000)]
    chosen = [held_out(k, 0.3) for k in keys]
    assert 0.26 < sum(chosen) / len(keys) < 0.34
    assert chosen == [held_out(k, 0.3) for k in keys]  # the same every time (no process-salted hash)
    assert not any(held_out(k, 0.0) for k in keys)
    # A larger share keeps every example the smaller one held out (the gate's set only grows).
    assert all(held_out(k, 0.5) for k, c in zip(keys, chosen, strict=True) if c)

    n = 50
    examples = LabelledExamples(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2),
                                torch.arange(n) % 2, keys[:n], labelled=n + 3)
    train, holdout = examples.split(0.3)
    assert len(train) + len(holdout) == n and set(train.keys).isdisjoint(holdout.keys)
    assert holdout.keys == [k for k in keys[:n] if held_out(k, 0.3)]
    for part in (train, holdout):
        for key, image, label in zip(part.keys, part.images, part.labels, strict=True):
            i = keys.index(key)
            assert float(image[0, 0, 0]) == i and int(label) == i % 2


def test_the_demo_labels_each_shifted_prediction_with_its_true_class() -> None:
    """``send_window(label=True)``: one image per request, each request's prediction labelled with the truth."""
    from datetime import timedelta

    from mlops.settings import get_settings
    from mlops_cli import demo
    from training.data import Shift

    sent, recorded = [], []

    class Client:
        def close(self) -> None:
            pass

    def predict(images, client=None, ep=None):  # noqa: ANN001, ANN202
        sent.append(len(images))
        return {"request_id": f"r{len(sent)}", "predictions": [{} for _ in images]}

    traffic = demo.Traffic(make_client=lambda: (Client(), None), predict=predict,
                           record_labels=lambda labels: recorded.extend(labels) or len(labels), sleep=lambda s: None)
    config = demo.DemoConfig(model_name="m", max_images_per_window=6, batch=4, clients=1)
    shift = Shift(brightness=0.6)
    said: list[str] = []
    window = timedelta(hours=1)  # the cap, not the clock, ends the traffic here
    demo.send_window(config, window, shift, seed=7, say=said.append, label=True, traffic=traffic)
    size = get_settings().train_image_size
    truth = [*demo.demo_images(7, 0, 4, size, shift)[1], *demo.demo_images(7, 1, 2, size, shift)[1]]
    assert sent == [1] * 6
    assert recorded == [(f"r{k + 1}", 0, int(truth[k])) for k in range(6)]
    assert "labelled 6 of them" in said[-1]
    sent.clear()
    demo.send_window(demo.DemoConfig(model_name="m", max_images_per_window=6, batch=4, clients=2), window, None,
                     seed=7, say=said.append, traffic=traffic)
    assert sorted(sent) == [2, 4] and len(recorded) == 6  # unlabelled traffic: batched, no labels
