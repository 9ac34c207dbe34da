"""The realtime voice agent on the wire: frames in, what was heard, what the agent says, audio out.

Every message is keyed by its session (the Pw-Session header and the subject's last token);
nothing here is durable: a lost frame is a glitch, not a lost job.

    frames  (AudioFrame, from the gateway) --listen--> heard (HearEvent)
    heard   --agent--> replies (AgentEvent) --guardrail--> said (AgentEvent)
    said    --synthesize--> audio_out (SpeechAudio, to the gateway)

The gateway also writes `Spoken` into `heard` (what the user actually heard of a reply that
was interrupted) and reads `heard` (partials, barge-in), `said` (text, tools) and `audio_out`.
"""
from __future__ import annotations

from typing import Any, Literal, Union

from schemas.base import Message
from schemas.speech import Word


class SpeechStarted(Message, frozen=True):
    """The user started speaking (onset confirmed). During playback: pause the agent."""

    session_id: str
    turn: int
    at_s: float = 0.0                 # stream time, seconds since the session's first frame
    during_playback: bool = False


class Partial(Message, frozen=True):
    """What the user has said so far in this turn (changes until the UserTurn)."""

    session_id: str
    turn: int
    text: str
    at_s: float = 0.0


class Interrupt(Message, frozen=True):
    """Speech over the agent that is a real interruption (words, not "mm-hm" or a cough):
    flush the agent's audio and cancel its turn."""

    session_id: str
    turn: int
    text: str = ""
    at_s: float = 0.0


class UserTurn(Message, frozen=True):
    """A finished user turn: the final transcript and where the time went."""

    session_id: str
    turn: int
    text: str
    user: str = ""
    words: list[Word] = []
    start_s: float = 0.0              # stream time of the speech
    end_s: float = 0.0
    speech_end_unix: float = 0.0      # wall time the speech ended (time to first audio starts here)
    decided_unix: float = 0.0         # wall time the end of turn was decided
    asr_ms: float = 0.0               # the final decode
    during_playback: bool = False


class TurnDiscarded(Message, frozen=True):
    """Sound that is not a turn: too short, noise, a cough, a backchannel over the agent.
    During playback: resume the agent's audio."""

    session_id: str
    turn: int
    reason: str
    text: str = ""


class Spoken(Message, frozen=True):
    """From the gateway: how much of an agent turn the user heard before interrupting."""

    session_id: str
    turn: int
    text: str                         # the sentences played, the last one cut where it stopped
    interrupted: bool = True


class SessionClosed(Message, frozen=True):
    """The session is over (hang-up, timeout): free its state; the agent files its memory."""

    session_id: str
    reason: str = ""
    user: str = ""


HearEvent = Union[SpeechStarted, Partial, Interrupt, UserTurn, TurnDiscarded, Spoken,
                  SessionClosed]


class AgentSentence(Message, frozen=True):
    """One sentence of the agent's reply, as soon as it is complete (speech starts on it)."""

    session_id: str
    turn: int
    index: int
    text: str


ToolState = Literal["started", "finished", "cancelled", "refused", "failed"]


class ToolActivity(Message, frozen=True):
    session_id: str
    turn: int
    name: str
    arguments: dict[str, Any] = {}
    state: ToolState = "started"
    result: str = ""


class AgentTurnDone(Message, frozen=True):
    """The reply is complete (or was cut): its full text and timings."""

    session_id: str
    turn: int
    text: str = ""
    interrupted: bool = False
    refused: bool = False
    timings: dict[str, float] = {}    # ms: tool, llm_first_token, llm_first_sentence, total


AgentEvent = Union[AgentSentence, ToolActivity, AgentTurnDone]


class SpeechAudio(Message, frozen=True, gc=False):
    """A piece of the agent's voice: mono s16le PCM. `last` ends a sentence, `end_of_turn`
    (on an empty piece) ends the reply."""

    session_id: str
    turn: int
    index: int                        # the sentence
    seq: int                          # the piece within the sentence
    pcm: bytes = b""
    sample_rate: int = 22_050
    text: str = ""                    # the sentence, on its first piece
    last: bool = False
    end_of_turn: bool = False
