"""The graph check: a topology that would lose or misroute messages refuses to load.

Checks, each error naming the path in the YAML:
  - names are subject-safe and unique; every input and output names a declared edge;
  - each edge has one message type, and operators read and write the types they declare;
  - every edge that something writes is read by an operator or listed in `outputs`,
    and the errors edge (type Failure) is among them: a declared error output must be consumed;
  - every edge an operator reads is written by an operator or listed in `inputs`.
"""
from __future__ import annotations

from typing import Any

import msgspec

from operators import registry
from schemas import message_type, type_name
from topology.spec import Mode, TopologyError, TopologySpec, convert_config
from topology.subjects import valid_token


class Bound(msgspec.Struct, frozen=True):
    """One operator of a checked topology, ready to construct."""

    index: int
    spec: Any            # OperatorSpec
    cls: type
    config: Any
    engine_factory: Any  # None, or a callable taking the config
    input_mode: Mode
    output_mode: Mode | None


def _check_names(topo: TopologySpec) -> None:
    for edge in topo.edges:
        if not valid_token(edge) or edge.startswith("_"):
            raise TopologyError(f"$.edges.{edge}", "edge names must match [A-Za-z0-9_-]+ "
                                "and not start with '_'")
    seen: set[str] = set()
    for i, op in enumerate(topo.operators):
        if not valid_token(op.name):
            raise TopologyError(f"$.operators[{i}].name", f"{op.name!r} must match [A-Za-z0-9_-]+")
        if op.name in seen:
            raise TopologyError(f"$.operators[{i}].name", f"duplicate operator name {op.name!r}")
        seen.add(op.name)


def _check_edge_refs(topo: TopologySpec) -> None:
    def need(edge: str, path: str) -> None:
        if edge not in topo.edges:
            raise TopologyError(path, f"no edge named {edge!r} (declared: {', '.join(topo.edges)})")

    for i, op in enumerate(topo.operators):
        need(op.input, f"$.operators[{i}].input")
        if op.output is not None:
            need(op.output, f"$.operators[{i}].output")
    for key in ("inputs", "outputs"):
        for j, edge in enumerate(getattr(topo, key)):
            need(edge, f"$.{key}[{j}]")
    need(topo.errors, "$.errors")
    for name, edge in topo.edges.items():
        try:
            message_type(edge.type)
        except KeyError as e:
            raise TopologyError(f"$.edges.{name}.type", e.args[0]) from None
    if topo.edges[topo.errors].type != "Failure":
        raise TopologyError(f"$.edges.{topo.errors}.type", "the errors edge must carry Failure")


def _check_flow(topo: TopologySpec) -> None:
    read = {op.input for op in topo.operators} | set(topo.outputs)
    written = {op.output for op in topo.operators if op.output} | set(topo.inputs)
    for name in topo.edges:
        if name == topo.errors:
            if name not in read:
                raise TopologyError("$.errors", f"error edge {name!r} is not consumed: "
                                    "list it in outputs or give it a reading operator")
            continue
        if name in written and name not in read:
            raise TopologyError(f"$.edges.{name}", "written but never read: "
                                "add a reading operator or list it in outputs")
        if name in read and name not in written:
            raise TopologyError(f"$.edges.{name}", "read but never written: "
                                "add a writing operator or list it in inputs")


def _bind(topo: TopologySpec, i: int) -> Bound:
    op = topo.operators[i]
    path = f"$.operators[{i}]"
    try:
        cls = registry.operator_class(op.kind)
        factory = registry.engine_factory(cls.kind, op.engine)
    except (registry.RegistryError, ImportError, AttributeError) as e:
        raise TopologyError(f"{path}.kind", str(e)) from None
    config = convert_config(cls.Config, op.config, f"{path}.config")
    _check_types(topo, i, cls)
    out_mode = topo.edges[op.output].mode if op.output else None
    return Bound(i, op, cls, config, factory, topo.edges[op.input].mode, out_mode)


def _check_types(topo: TopologySpec, i: int, cls: type) -> None:
    op = topo.operators[i]
    edge_in, reads = topo.edges[op.input].type, type_name(cls.input_type)
    if edge_in != reads:
        raise TopologyError(f"$.operators[{i}].input", f"{op.kind} reads "
                            f"{reads} but edge {op.input!r} carries {edge_in}")
    if op.output is not None:
        edge_out, writes = topo.edges[op.output].type, type_name(cls.output_type)
        if edge_out != writes:
            raise TopologyError(f"$.operators[{i}].output", f"{op.kind} writes "
                                f"{writes} but edge {op.output!r} carries {edge_out}")


def check(topo: TopologySpec) -> list[Bound]:
    """Validate the whole graph; return every operator bound to its class, config and engine."""
    _check_names(topo)
    _check_edge_refs(topo)
    _check_flow(topo)
    return [_bind(topo, i) for i in range(len(topo.operators))]
