"""Every inference client imports under the pinned set: a drifting pin fails here, not in production.

pip left to itself picks tritonclient 2.41 and a grpcio under which `import riva.client` fails
(riva-client >= 2.25 stubs need grpcio >= 1.81, weaviate-client caps grpcio < 1.80).
"""
from __future__ import annotations

import importlib
from importlib.metadata import version

import pytest

PINS = {
    "nvidia-riva-client": "2.24.0", "tritonclient": "2.66.0", "weaviate-client": "4.24.1",
    "grpcio": "1.67.1", "protobuf": "5.29.6", "nats-py": "2.16.0", "msgspec": "0.22.0",
    "faststream": "0.7.8", "aiortc": "1.16.0", "opentelemetry-sdk": "1.45.2",
}


@pytest.mark.parametrize("module", [
    "riva.client", "tritonclient.grpc", "tritonclient.http", "weaviate", "aiortc",
    "faststream.nats", "nats", "msgspec", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "faster_whisper", "onnxruntime", "av",
])
def test_client_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("dist, pinned", sorted(PINS.items()))
def test_pinned_versions_installed(dist, pinned):
    assert version(dist) == pinned


def test_riva_stubs_speak_the_real_protocol():
    from riva.client.proto import riva_asr_pb2, riva_asr_pb2_grpc
    assert hasattr(riva_asr_pb2_grpc, "RivaSpeechRecognitionStub")
    assert riva_asr_pb2.StreamingRecognizeRequest.DESCRIPTOR.name == "StreamingRecognizeRequest"
