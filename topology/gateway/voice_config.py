"""What the voice gateway is told: limits, timeouts, edges, and the ICE servers for real networks.

The environment is read only here, at the entry point (start.py):

    PATCHWIRE_VOICE_MAX_SESSIONS   calls at once (more get 503); default one per two cores
    PATCHWIRE_ICE_SERVERS          JSON: [{"urls": ["turn:turn.example.com:3478"],
                                           "username": "u", "credential": "p"}, …]
    PATCHWIRE_VOICE_LOOPBACK       1: also offer 127.0.0.1 as an ICE candidate (one machine,
                                   no network: tests, a laptop offline)
"""
from __future__ import annotations

import logging
import os
from typing import Annotated, Mapping

import msgspec
from aiortc import RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)


class IceServer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A STUN or TURN server, as the browser's RTCIceServer spells it. The same list goes to
    the page (GET /v1/voice/config), so TURN credentials here are visible to callers: give
    short-lived ones (a TURN REST secret) on public deployments."""

    urls: list[str]
    username: str = ""
    credential: str = ""


class VoiceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_sessions: Annotated[int, msgspec.Meta(ge=0)] = msgspec.field(
        default_factory=lambda: default_max_sessions())
    ice_servers: list[IceServer] = []          # none: host candidates only (a LAN, loopback)
    loopback: bool = False                     # also gather 127.0.0.1 (see allow_loopback)
    connect_timeout_s: float = 15.0            # offer answered → first audio from the caller
    no_audio_timeout_s: float = 10.0           # a caller silent on the wire this long is gone
    max_queued_s: float = 60.0                 # the agent's audio waiting to be played
    user_frames: int = 50                      # frames that carry `user` (1 s: one lost is fine)
    max_offer_bytes: int = 64 * 1024
    frames_edge: str = "frames"
    heard_edge: str = "heard"
    said_edge: str = "said"
    audio_edge: str = "audio_out"
    cancel_operators: tuple[str, ...] = ("agent", "guardrail", "synthesize")   # barge-in stops these
    # The caller's audio feeds VAD and ASR, not a loudspeaker: it needs its packets in order,
    # not smoothed. aiortc holds 4 frames (80 ms) before handing one out; 1 is its least.
    uplink_buffer_frames: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1

    def rtc(self) -> RTCConfiguration:
        """aiortc's form. An empty list, not None: None means Google's public STUN server,
        which a closed network cannot reach (gathering would wait on it)."""
        return RTCConfiguration(iceServers=[
            RTCIceServer(urls=s.urls, username=s.username or None,
                         credential=s.credential or None) for s in self.ice_servers])

    def for_page(self) -> list[dict]:
        out = []
        for s in self.ice_servers:
            entry: dict = {"urls": s.urls}
            if s.username:
                entry.update(username=s.username, credential=s.credential)
            out.append(entry)
        return out


def config_from_env(env: Mapping[str, str] | None = None) -> VoiceConfig:
    env = os.environ if env is None else env
    fields: dict = {}
    if value := env.get("PATCHWIRE_VOICE_MAX_SESSIONS"):
        fields["max_sessions"] = _parse("PATCHWIRE_VOICE_MAX_SESSIONS", value, int)
    if value := env.get("PATCHWIRE_ICE_SERVERS"):
        fields["ice_servers"] = _parse("PATCHWIRE_ICE_SERVERS", value, list[IceServer])
    if value := env.get("PATCHWIRE_VOICE_LOOPBACK"):
        fields["loopback"] = value.strip().lower() in ("1", "true", "yes", "on")
    try:
        return msgspec.convert(fields, VoiceConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"voice gateway settings: {exc}") from None


def _parse(name: str, value: str, kind):
    try:
        return msgspec.json.decode(value.encode(), type=kind)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{name}={value!r}: {exc}") from None


_original_host_addresses = None


def default_max_sessions(cores: int | None = None) -> int:
    """Calls admitted at once when PATCHWIRE_VOICE_MAX_SESSIONS is not set: one per two cores.
    With every model on the CPU (Whisper tiny.en, Qwen 0.5B, piper) one call stays real-time
    on 2 cores and two do not (loadtests/RESULTS.md, voice-load); with the models on GPU
    servers set the variable to what those serve."""
    return max(1, (cores or os.cpu_count() or 2) // 2)


def set_receive_buffer(pc, frames: int) -> bool:
    """How many 20 ms frames aiortc's audio receivers hold back (its JitterBuffer prefetch,
    4 by default and with no option: a named reach into aiortc 1.16's private receiver).
    Call it once the remote description is set. False where aiortc no longer looks so."""
    done = False
    for receiver in pc.getReceivers():
        buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
        if receiver.track is not None and receiver.track.kind == "audio" and hasattr(buffer, "_prefetch"):
            buffer._prefetch = frames
            done = True
    if not done:
        log.warning("aiortc's audio receive buffer could not be set to %d frames", frames)
    return done


def allow_loopback() -> None:
    """Make aioice offer 127.0.0.1 as a host candidate too (it skips it by design, and has no
    option for it). Process-wide and idempotent: everything ICE in this process gains the
    loopback candidate, which costs one more candidate pair where a network exists."""
    global _original_host_addresses
    from aioice import ice
    if _original_host_addresses is not None:
        return
    _original_host_addresses = ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = _original_host_addresses(use_ipv4, use_ipv6)
        return addresses + ["127.0.0.1"] if use_ipv4 else addresses
    ice.get_host_addresses = with_loopback
