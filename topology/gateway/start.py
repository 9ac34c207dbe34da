"""Start the gateway a topology asks for (its `gateway:` section) next to its operators.

    qa        the document QA bot: the QaClient over this deployment's bus, the NATS
              request/reply responder on `{ns}.doc_qa._ask`, and the HTTP app. The store is
              opened read-only here for listing documents; answers and ingests go over the
              bus like any client's.
    meetings  the meeting transcriber: the MeetingClient over the bus and object store, and
              the HTTP app with its page at `/` (http_meetings.py).
    voice     the realtime voice agent: WebRTC signalling and one session per call over the
              bus, its page at `/` (voice.py); limits and ICE servers from the environment
              (voice_config.py).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from topology.spec import GatewaySpec, TopologyError, TopologySpec

SERVICES = ("qa", "meetings", "voice")


class RunningGateway:
    def __init__(self, url: str, closers: list):
        self.url, self._closers = url, closers

    async def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()


async def start_gateway(dep, topo: TopologySpec, port: int | None = None) -> RunningGateway:
    spec: GatewaySpec = topo.gateway
    if spec.service not in SERVICES:
        raise TopologyError("$.gateway.service",
                            f"unknown service {spec.service!r} (known: {', '.join(SERVICES)})")
    from topology.gateway.auth import load_users
    from topology.gateway.http import make_app, serve
    closers: list = []
    try:
        if spec.service == "qa":
            app_args = await _qa(dep, closers)
        elif spec.service == "voice":
            app_args = await _voice(dep, closers)
        else:
            app_args = await _meetings(dep, closers)
        users_file = os.environ.get("PATCHWIRE_USERS") or spec.users
        users = load_users(Path(users_file)) if users_file else None
        env_port = os.environ.get("PATCHWIRE_HTTP_PORT")
        chosen = port if port is not None else int(env_port) if env_port else spec.port
        runner, url = await serve(make_app(**app_args, users=users), spec.host, chosen)
    except BaseException:
        await RunningGateway("", closers).close()
        raise
    closers.append(runner.cleanup)
    return RunningGateway(url, closers)


async def _qa(dep, closers: list) -> dict:
    from operators.store.factory import embedded_store
    from topology.qa import QaClient, serve_requests
    retrieve = next((b for b in dep.bound if b.spec.kind == "retrieve"), None)
    store = embedded_store(retrieve.config) if retrieve is not None else None
    if store is not None:
        await store.open("", 0)
        closers.append(store.close)
    client = QaClient(dep.bus, dep.blobs, store)
    responder = await serve_requests(client)
    closers.append(responder.unsubscribe)
    return {"service": client}


async def _meetings(dep, closers: list) -> dict:
    from topology.gateway.meetings import MeetingClient
    client = MeetingClient(dep.bus, dep.blobs)
    closers.append(client.close)
    return {"service": None, "meetings": client}


async def _voice(dep, closers: list) -> dict:
    from topology.gateway.voice import VoiceGateway
    from topology.gateway.voice_config import config_from_env
    gateway = VoiceGateway(dep.bus, config_from_env())
    closers.append(gateway.close)
    return {"service": None, "voice": gateway}
