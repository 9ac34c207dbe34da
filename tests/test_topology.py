"""Loader and graph check: bad topologies refuse to load, with the path of the problem."""
from __future__ import annotations

import pytest

from topology import spec as topo_spec
from topology.graph import check
from topology.spec import TopologyError
from topology.subjects import Subjects

GOOD = """
name: demo
edges:
  pings: {type: Ping, mode: realtime}
  pongs: {type: Ping, mode: realtime}
  errors: {type: Failure}
inputs: [pings]
outputs: [pongs, errors]
operators:
  - {name: echo, kind: echo, input: pings, output: pongs}
"""


def parse(text: str):
    return topo_spec.parse(text, "test.yaml")


def test_good_topology_binds_operators():
    bound = check(parse(GOOD))
    assert [b.spec.name for b in bound] == ["echo"]
    assert bound[0].cls.__name__ == "Echo"


def test_transcribe_topology_is_valid():
    from topology.cli import TRANSCRIBE_YAML
    topo = topo_spec.load(TRANSCRIBE_YAML)
    assert [op.name for op in topo.operators] == ["decode", "vad", "asr"]


@pytest.mark.parametrize("mutate, path, words", [
    (lambda t: t.replace("input: pings", "input: nowhere"), "$.operators[0].input", "no edge named 'nowhere'"),
    (lambda t: t.replace("outputs: [pongs, errors]", "outputs: [pongs]"), "$.errors", "not consumed"),
    (lambda t: t.replace("outputs: [pongs, errors]", "outputs: [errors]"), "$.edges.pongs", "never read"),
    (lambda t: t.replace("inputs: [pings]", "inputs: []"), "$.edges.pings", "never written"),
    (lambda t: t.replace("pongs: {type: Ping", "pongs: {type: Transcript"), "$.operators[0].output", "writes Ping"),
    (lambda t: t.replace("pongs: {type: Ping", "pongs: {type: Nope"), "$.edges.pongs.type", "unknown message type"),
    (lambda t: t.replace("kind: echo", "kind: nosuch"), "$.operators[0].kind", "unknown operator kind"),
    (lambda t: t.replace("output: pongs}", "output: pongs, config: {x: 1}}"), "$.operators[0].config", "unknown field"),
    (lambda t: t.replace("output: pongs}", "output: pongs, colour: red}"), "$.operators[0]", "unknown field `colour`"),
    (lambda t: t.replace("mode: realtime}\n  pongs", "mode: sometimes}\n  pongs"), "$.edges.pings.mode", "Invalid enum"),
    (lambda t: t.replace("name: echo", "name: 'a.b'"), "$.operators[0].name", "must match"),
])
def test_bad_topologies_name_the_path(mutate, path, words):
    with pytest.raises(TopologyError) as err:
        check(parse(mutate(GOOD)))
    assert err.value.path.startswith(path), str(err.value)
    assert words in str(err.value)


def test_config_error_names_the_field():
    with pytest.raises(TopologyError) as err:
        check(parse(GOOD.replace("kind: echo, input: pings, output: pongs}",
                                 "kind: asr, input: pings, output: pongs, config: {beam_size: lots}}")
                    .replace("pings: {type: Ping", "pings: {type: SpeechSegments")
                    .replace("pongs: {type: Ping", "pongs: {type: Transcript")))
    assert err.value.path == "$.operators[0].config.beam_size"


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(TopologyError, match="not valid YAML"):
        parse("name: [unclosed")
    with pytest.raises(TopologyError, match="mapping"):
        parse("- a list")


def test_override_sets_config_and_rejects_unknown_operator():
    topo = topo_spec.override(parse(GOOD), ["echo.concurrency=4"])
    assert topo.operators[0].concurrency == 4
    with pytest.raises(TopologyError, match="no operator named"):
        topo_spec.override(parse(GOOD), ["nobody.x=1"])
    with pytest.raises(TopologyError, match="OPERATOR.KEY=VALUE"):
        topo_spec.override(parse(GOOD), ["echo"])


def test_subjects_are_derived_in_one_place():
    s = Subjects("transcribe", "pw")
    assert s.edge("jobs", "j1") == "pw.transcribe.jobs.j1"
    assert s.edge("audio") == "pw.transcribe.audio._"
    assert s.edge_filter("jobs") == "pw.transcribe.jobs.>"
    assert s.work_stream == "PW_TRANSCRIBE_WORK"
    with pytest.raises(ValueError):
        Subjects("a.b")


@pytest.mark.parametrize("setting, path", [
    ("echo.concurrency=0", "$.operators[0].concurrency"),
    ("echo.concurrency=abc", "$.operators[0].concurrency"),
    ("echo.queue=0", "$.operators[0].queue"),
])
def test_settings_are_validated_like_the_file(setting, path):
    with pytest.raises(TopologyError) as err:
        topo_spec.override(parse(GOOD), [setting])
    assert err.value.path == path


def test_durability_must_be_positive():
    with pytest.raises(TopologyError) as err:
        parse(GOOD + "durability: {ack_wait_s: 0}\n")
    assert err.value.path == "$.durability.ack_wait_s"
