"""Turn-taking from voice activity and words: when the user starts, when they have finished.

A window (32 ms) is speech when Silero says so with hysteresis: `on` to start, below `off` to
stop. Speech starts after `onset_ms` of speech windows (a click is not a turn). The end of a
turn is a pause whose required length depends on what was said so far:

    "What's on my calendar tomorrow?"   complete: ends after `end_ms`
    "I want to…"                        open (a continuation word, a comma): `hold_ms`
    nothing transcribed yet             `end_ms` + the time the words are being found

so a thinking pause mid-sentence is not an end, and a finished question is answered fast.
"""
from __future__ import annotations

import enum
import re

import msgspec

CONTINUATIONS = frozenset("""and or but so because to the a an of for with my your our their
is are was were will would could should can I we you he she they it that which who if then
than um uh er like about from into at on in by as than whether just""".split())
BACKCHANNELS = frozenset("""mm mhm mm-hm mm-hmm hmm uh-huh uh huh yeah yep yes ok okay right
sure aha ah oh i see got it cool alright""".split())
NONSPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")    # [cough] (laughs) *sighs* ♪
WORD = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


class TurnConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    on: float = 0.5              # speech probability that starts (or continues) speech
    off: float = 0.35            # below this a window is a pause
    onset_ms: int = 96           # speech this long starts a turn (3 windows)
    barge_onset_ms: int = 64     # over the agent's reply: sooner (a wrong start only pauses it)
    end_ms: int = 480            # pause that ends a complete-sounding turn
    hold_ms: int = 1200          # pause that ends a turn that sounds unfinished
    min_speech_ms: int = 200     # shorter sound is discarded ("too short")
    barge_words: int = 2         # words over the agent that make an interruption
    barge_ms: int = 1200         # or speech this long, words or not (a long "mmmmm" is not)


class Phase(str, enum.Enum):
    IDLE = "idle"
    SPEAKING = "speaking"
    PAUSED = "paused"            # speech then a pause not yet long enough to end the turn


def spoken_words(text: str) -> list[str]:
    return WORD.findall(NONSPEECH.sub(" ", text.lower()))


# However the ASR spells a hum: "Mmm", "Hmm", "Mm-hmm", "Mhm", "Uh-huh", "Ahh", "Ohh".
HUM = re.compile(r"^(?:[mh]+(?:-[mh]+)*|uh-?huh|a+h+|o+h+)$")


def backchannel_word(word: str) -> bool:
    return word in BACKCHANNELS or bool(HUM.match(word))


def is_backchannel(text: str) -> bool:
    """Nothing but "mm-hm", "yeah", "okay"... (or nothing at all)."""
    return all(backchannel_word(w) for w in spoken_words(text))


def sounds_unfinished(text: str) -> bool:
    """A trailing comma or ellipsis, or a last word that needs more ("to", "and", "my");
    Whisper often closes even "I want to" with a period, so only "?" and "!" overrule."""
    stripped = NONSPEECH.sub(" ", text).strip()
    if not stripped or stripped.endswith(("?", "!")):
        return False
    if stripped.endswith((",", "-", "…", "...")):
        return True
    words = spoken_words(stripped)
    return bool(words) and words[-1] in CONTINUATIONS


class TurnDetector:
    """One session's turn state, fed one window probability at a time."""

    def __init__(self, config: TurnConfig, window_ms: float = 32.0):
        self.c, self.window_ms = config, window_ms
        self.phase = Phase.IDLE
        self.run_ms = 0.0          # consecutive speech (IDLE: candidate onset) or pause (PAUSED)
        self.speech_ms = 0.0       # speech in this turn
        self.text = ""             # the latest transcript of this turn (decides the pause)

    def push(self, prob: float, playing: bool = False) -> str:
        """'' or an event: 'start' (turn begins), 'pause' (speech stopped, turn open),
        'resume', 'end' (turn over), 'discard' (it was too short to be a turn). `playing`:
        the agent is speaking, so a start is confirmed sooner (the gateway only pauses it,
        and a start that comes to nothing is discarded and the reply resumes)."""
        speech = prob >= (self.c.off if self.phase is Phase.SPEAKING else self.c.on)
        if self.phase is Phase.IDLE:
            self.run_ms = self.run_ms + self.window_ms if speech else 0.0
            if self.run_ms >= (self.c.barge_onset_ms if playing else self.c.onset_ms):
                self.phase, self.speech_ms = Phase.SPEAKING, self.run_ms
                return "start"
            return ""
        if speech:
            self.speech_ms += self.window_ms
            if self.phase is Phase.PAUSED:
                self.phase, self.run_ms = Phase.SPEAKING, 0.0
                return "resume"
            return ""
        if self.phase is Phase.SPEAKING:
            self.phase, self.run_ms = Phase.PAUSED, 0.0
            return "pause"
        self.run_ms += self.window_ms
        if self.run_ms >= self.pause_needed():
            return self._close()
        return ""

    def pause_needed(self) -> float:
        return self.c.hold_ms if sounds_unfinished(self.text) else self.c.end_ms

    def _close(self) -> str:
        event = "end" if self.speech_ms >= self.c.min_speech_ms else "discard"
        self.phase, self.run_ms, self.speech_ms, self.text = Phase.IDLE, 0.0, 0.0, ""
        return event

    def force_end(self) -> str:
        """The stream ends (hang-up) mid-turn."""
        return self._close() if self.phase is not Phase.IDLE else ""

    def interrupts(self, text: str) -> bool:
        """Speech over the agent is an interruption once it has real words, or is long."""
        words = [w for w in spoken_words(text) if not backchannel_word(w)]
        return len(words) >= self.c.barge_words or (
            self.speech_ms >= self.c.barge_ms and bool(words))
