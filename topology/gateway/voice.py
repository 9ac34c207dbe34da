"""The realtime voice agent: WebRTC signalling over HTTP, one VoiceSession per call.

    GET    /voice.html (and / when the gateway serves the voice agent)   the page
    GET    /v1/voice/config         {"ice_servers": [...], "max_sessions", "sessions"}
    POST   /v1/voice/offer          {"sdp", "type": "offer", "user"?}
                                    → {"session_id", "sdp", "type": "answer"}
    DELETE /v1/voice/{session_id}   hang up → {"session_id", "closed": true}

Answers carry every ICE candidate (aiortc gathers before answering), so there is no trickle
endpoint. Errors are the gateway's {"error": {"code", "message"}}: 400 for a body that is not
an offer (no JSON, no audio m-line, an SDP aiortc cannot use), 403 for a `user` that is not
the caller's, 404 for a session that is not there (or not the caller's), 503 with Retry-After
when every session is taken. Who speaks comes from the credentials when the gateway has
users; anonymous callers may name themselves with `user` (a label, not an identity).
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets

import msgspec
from aiohttp import web

from topology.bus import Bus
from topology.gateway.http import STATIC, ApiError, Gateway, _error, _json, _read_limited
from topology.gateway.voice_config import VoiceConfig, allow_loopback
from topology.gateway.voice_session import NoMicrophone, VoiceSession

log = logging.getLogger(__name__)

AUDIO_LINE = re.compile(r"^m=audio ", re.MULTILINE)
MAX_USER_CHARS = 128
RETRY_AFTER_S = 5


class OfferBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sdp: str
    type: str = "offer"
    user: str = ""


class Busy(Exception):
    pass


class BadOffer(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class VoiceGateway:
    """The calls in progress, at most `config.max_sessions` of them."""

    def __init__(self, bus: Bus, config: VoiceConfig | None = None) -> None:
        self.bus, self.config = bus, config or VoiceConfig()
        self.sessions: dict[str, VoiceSession] = {}
        self.owners: dict[str, str] = {}
        if self.config.loopback:
            allow_loopback()

    async def open(self, offer_sdp: str, user: str, owner: str = "") -> VoiceSession:
        """Admit a call and answer its offer (session.pc.localDescription is the answer)."""
        if len(self.sessions) >= self.config.max_sessions:
            raise Busy(f"all {self.config.max_sessions} voice sessions are in use; "
                       f"try again in a moment")
        session_id = "v" + secrets.token_hex(16)
        session = VoiceSession(session_id, user, self.bus, self.config, self._forget)
        self.sessions[session_id] = session          # counted from now: offers race
        self.owners[session_id] = owner
        try:
            await session.start(offer_sdp)
        except BaseException as exc:
            await session.close(f"the offer was not usable: {exc}")
            if isinstance(exc, NoMicrophone):
                raise BadOffer("no_audio", str(exc)) from None
            if isinstance(exc, (ValueError, AssertionError, KeyError, IndexError)):
                raise BadOffer("invalid_sdp", "the offer's SDP is not usable here: "
                               f"{exc or type(exc).__name__}") from None
            raise
        log.info("voice session %s opened for %r", session_id, user or "anonymous")
        return session

    async def hang_up(self, session_id: str, owner: str = "") -> bool:
        session = self.sessions.get(session_id)
        if session is None or self.owners.get(session_id, "") != owner:
            return False
        await session.close("the caller hung up")
        return True

    def _forget(self, session: VoiceSession) -> None:
        self.sessions.pop(session.id, None)
        self.owners.pop(session.id, None)

    async def close(self) -> None:
        await asyncio.gather(*(s.close("the gateway is stopping")
                               for s in list(self.sessions.values())), return_exceptions=True)


def add_routes(app: web.Application, gateway: Gateway, voice: VoiceGateway, *,
               at_root: bool) -> None:
    routes = VoiceRoutes(gateway, voice)
    if at_root:
        app.router.add_get("/", routes.page)
    app.router.add_get("/voice.html", routes.page)
    app.router.add_get("/v1/voice/config", routes.config)
    app.router.add_post("/v1/voice/offer", routes.offer)
    app.router.add_delete("/v1/voice/{session_id}", routes.hang_up)
    app.on_shutdown.append(lambda app: voice.close())


class VoiceRoutes:
    def __init__(self, gateway: Gateway, voice: VoiceGateway) -> None:
        self.gateway, self.voice = gateway, voice
        self._decoder = msgspec.json.Decoder(OfferBody)

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "voice.html")

    async def config(self, request: web.Request) -> web.Response:
        self.gateway.principal(request)
        c = self.voice.config
        return _json({"ice_servers": c.for_page(), "max_sessions": c.max_sessions,
                      "sessions": len(self.voice.sessions)})

    async def offer(self, request: web.Request) -> web.Response:
        principal = self.gateway.principal(request)
        body = self._decode(await _read_limited(request, self.voice.config.max_offer_bytes))
        user, owner = body.user.strip(), ""
        if self.gateway.users is not None:
            if user and user != principal.user:
                raise ApiError(403, "user_not_allowed",
                               "'user' must be you: it is set from your credentials")
            user = owner = principal.user
        try:
            session = await self.voice.open(body.sdp, user, owner)
        except Busy as exc:
            response = _error(503, "busy", str(exc))
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        except BadOffer as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        answer = session.pc.localDescription
        return _json({"session_id": session.id, "sdp": answer.sdp, "type": answer.type})

    def _decode(self, raw: bytes) -> OfferBody:
        try:
            body = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise ApiError(400, "invalid_request", f"invalid offer: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ApiError(400, "malformed_json", f"malformed JSON body: {exc}") from None
        if body.type != "offer":
            raise ApiError(400, "not_an_offer", f"expected type 'offer', got {body.type!r}")
        if not AUDIO_LINE.search(body.sdp):
            raise ApiError(400, "no_audio", "the offer has no audio m-line: add a microphone "
                           "track (or an audio transceiver) before creating the offer")
        if len(body.user) > MAX_USER_CHARS or not body.user.isprintable():
            raise ApiError(400, "invalid_user", f"'user' must be printable text of at most "
                           f"{MAX_USER_CHARS} characters")
        return body

    async def hang_up(self, request: web.Request) -> web.Response:
        principal = self.gateway.principal(request)
        session_id = request.match_info["session_id"]
        owner = principal.user if self.gateway.users is not None else ""
        if not await self.voice.hang_up(session_id, owner):
            raise ApiError(404, "no_session", f"no voice session {session_id!r}")
        return _json({"session_id": session_id, "closed": True})

