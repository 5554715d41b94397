"""Codecs from Python: round trips, any payload decodes, errors carry the message."""
import pytest
import torch

import hivemind_cpp as hm


@pytest.mark.parametrize("spec", ["none", "fp16", "bf16", "blockwise8", "blockwise4", "uniform8+zstd"])
def test_round_trip_within_the_codec_bound(spec):
    torch.manual_seed(0)
    values = torch.randn(5000)
    codec = hm.Codec(spec)
    payload = codec.encode(values)
    assert isinstance(payload, bytes)
    decoded = hm.decode(payload)
    assert decoded.dtype == torch.float32 and decoded.shape == (5000,)
    tolerance = {"none": 0.0, "fp16": 1e-2, "bf16": 5e-2}.get(spec, 0.8)
    assert (decoded - values).abs().max().item() <= tolerance
    assert hm.payload_info(payload)["count"] == 5000


def test_decode_restores_a_shape_and_reads_bytes_like_objects():
    values = torch.arange(12, dtype=torch.float32).view(3, 4)
    payload = hm.Codec("none").encode(values)
    assert torch.equal(hm.Codec.decode(bytearray(payload), shape=(3, 4)), values)
    assert torch.equal(hm.decode(memoryview(payload), shape=[3, 4]), values)


def test_error_feedback_keeps_what_the_codec_lost():
    codec = hm.Codec("blockwise2")
    ef = hm.ErrorFeedback(codec)
    values = torch.linspace(-1, 1, 1024)
    first = hm.decode(ef.encode(values))
    assert torch.allclose(first + ef.residual, values, atol=1e-6)
    ef.reset()
    assert ef.residual.numel() == 0


def test_bad_specs_payloads_and_inputs_raise_with_the_status_message():
    with pytest.raises(hm.InvalidArgumentError, match="unknown codec name 'bogus'") as info:
        hm.Codec("bogus")
    assert info.value.code == "INVALID_ARGUMENT"
    assert isinstance(info.value, ValueError) and isinstance(info.value, hm.HivemindError)
    with pytest.raises(hm.InvalidArgumentError, match="block"):
        hm.Codec("blockwise4:block=7")
    with pytest.raises(hm.InvalidArgumentError, match="NaN"):
        hm.Codec("fp16").encode(torch.tensor([1.0, float("nan")]))
    with pytest.raises(hm.InvalidArgumentError, match="float32 CPU tensor"):
        hm.Codec("fp16").encode(torch.ones(3, dtype=torch.float64))
    with pytest.raises(hm.DataLossError) as info:
        hm.decode(b"definitely not a payload")
    assert info.value.code == "DATA_LOSS"
    with pytest.raises(hm.InvalidArgumentError, match="holds 4 values"):
        hm.decode(hm.Codec().encode(torch.ones(4)), shape=(5,))
