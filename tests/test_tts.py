"""Text to speech: the normaliser, clause cuts and pieces in pure Python; then the real piper
voice and espeak-ng: audio that is speech, streaming, barge-in, a killed child, the operator."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal

import msgspec
import numpy as np
import pytest

from operators.base import Reject
from operators.models import model_file
from operators.registry import engine_factory, operator_class
from operators.testing import drive
from operators.voice.synthesize import Synthesize, SynthesizeConfig
from operators.voice.tts import piper as piper_mod
from operators.voice.tts.engine import PieceMaker, TtsError
from operators.voice.tts.espeak import EspeakEngine
from operators.voice.tts.normalize import speakable
from operators.voice.tts.piper import PiperEngine, clauses, piper_command
from schemas import AgentSentence, AgentTurnDone, ToolActivity

RATE = 22_050
LONG = ("I looked at the three documents you sent me, and the second one, the contract from "
        "March, says the payment is due within thirty days of delivery.")
SHORT = "The weather is fine today."
EXACT = SynthesizeConfig(noise_scale=0.0, noise_w=0.0)   # no sampling noise: repeatable audio


# --- text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, said", [
    ("Paris is the capital [1].", "Paris is the capital."),
    ("Both agree [2, 3][4] on it.", "Both agree on it."),
    ("This is **very** important, *really*.", "This is very important, really."),
    ("## Steps\n- open `config.yaml`\n- save", "Steps open config.yaml save"),
    ("See https://www.example.com/docs/page?id=3 for more.", "See example dot com for more."),
    ("Read [the guide](https://docs.python.org/3/).", "Read the guide."),
    ("We meet at 3:00 pm, or 9:07, or 15:00, or at 4:30.",
     "We meet at 3 pm, or 9 oh 7, or 15 hundred, or at 4 30."),
    ("It is 10:00.", "It is 10 o'clock."),
    ("It costs $5.99, $1, $0.50 or €20.",
     "It costs 5 dollars 99 cents, 1 dollar, 50 cents or 20 euros."),
    ("A $1.5 million deal for £3.", "A 1.5 million dollars deal for 3 pounds."),
    ("Pages 5–7, item #2, ~5 min.", "Pages 5 to 7, item number 2, about 5 min."),
    ("The score was 10:75 and 3,200 people came.", "The score was 10:75 and 3,200 people came."),
    ("Great 😀👍🏽 news!", "Great news!"),
    ("soft\u00adhyphen and\u200bjoined", "softhyphen andjoined"),
])
def test_speakable_says_what_a_voice_should(text, said):
    assert speakable(text) == said


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "...", "[1].", "**", "😀", "— –"])
def test_speakable_is_empty_when_nothing_can_be_said(text):
    assert speakable(text) == ""


def test_speakable_is_one_line_without_phoneme_blocks():
    """piper reads one stdin line per utterance and takes [[ ... ]] as raw phonemes."""
    said = speakable("First line\nsecond\r\nthird\u2028fourth\x0bfifth [[ h@loU ]]")
    assert said == "First line second third fourth fifth h@loU"


def test_clauses_start_short_and_keep_every_word():
    cut = clauses(LONG)
    assert cut == ["I looked at the three documents you sent me,", "and the second one,",
                   "the contract from March,",
                   "says the payment is due within thirty days of delivery."]
    assert clauses("Hello there, how are you?") == ["Hello there,", "how are you?"]
    assert clauses("Yes, I can.") == ["Yes, I can."]          # a one-word clause waits
    assert clauses("Hello there, —") == ["Hello there, —"]    # piper dies on a lone mark
    assert clauses("— well, then") == ["— well,", "then"]


def test_clauses_without_punctuation_cut_at_the_cap_before_a_joining_word():
    words = [f"w{i}" for i in range(30)]
    words[8] = "and"
    cut = clauses(" ".join(words), first_words=10, max_words=12)
    assert cut[0] == " ".join(words[:8])                     # cut before "and", not at 10
    assert all(len(c.split()) <= 12 for c in cut)
    assert " ".join(cut).split() == words


def test_pieces_are_piece_ms_long_and_resampled_on_request():
    pcm = np.zeros(RATE, dtype="<i2").tobytes()              # one second
    maker = PieceMaker(RATE, RATE, 160)
    pieces = maker.feed(pcm[:1001]) + maker.feed(pcm[1001:]) + maker.flush()  # odd split
    assert [len(p) for p in pieces] == [3528 * 2] * 6 + [2 * (RATE - 6 * 3528)]
    down = PieceMaker(RATE, 16_000, 100)
    out = b"".join(down.feed(pcm[:9999]) + down.feed(pcm[9999:]) + down.flush())
    assert abs(len(out) // 2 - 16_000) <= 16


def test_config_and_registry():
    with pytest.raises(msgspec.ValidationError, match="unknown voice 'nope'"):
        msgspec.convert({"voice": "nope"}, SynthesizeConfig)
    assert operator_class("synthesize") is Synthesize
    assert engine_factory("synthesize", "embedded") is PiperEngine
    assert engine_factory("synthesize", "espeak") is EspeakEngine


def test_missing_piper_cli_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(piper_mod.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TtsError, match=r"pip install --no-deps piper-tts==1\.8\.0"):
        piper_command(SynthesizeConfig())


def test_piper_command_carries_speed_and_noise():
    _needs_piper()
    argv, rate = piper_command(SynthesizeConfig(speed=2.0, noise_scale=0.0, noise_w=0.5))
    assert rate == RATE and argv[1:3] == ["-m", str(model_file("en_US-joe-medium"))]
    assert argv[3:] == ["--length-scale", "0.5000", "--noise-scale", "0.0", "--noise-w-scale", "0.5"]


def test_missing_voice_package_says_how_to_install(monkeypatch):
    from operators import models
    spec = models.MODELS["en_US-joe-medium"]
    gone = models.PackageFile("no-such-voice-pkg", "x/data")
    monkeypatch.setitem(models.MODELS, "en_US-joe-medium",
                        msgspec.structs.replace(spec, location=gone))
    with pytest.raises(models.ModelError, match="no-such-voice-pkg is not installed; run: pip"):
        piper_command(SynthesizeConfig())


# --- the piper voice ------------------------------------------------------------------------

def _needs_piper() -> None:
    try:
        piper_command(SynthesizeConfig())
    except Exception as e:   # noqa: BLE001 - any missing part: say which
        if os.environ.get("CI") == "true":
            pytest.fail(f"piper is not installed in CI (infra/install.sh): {e}")
        pytest.skip(f"piper voice not available: {e}")


@pytest.fixture(scope="module")
async def exact():
    _needs_piper()
    engine = PiperEngine(EXACT)
    await engine.start()
    yield engine
    await engine.close()


async def spoken(engine, text: str) -> bytes:
    return b"".join([p async for p in engine.speak(text)])


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


async def _until(condition, what: str) -> None:
    """Wait for a state the test drives towards (bounded, so a bug fails instead of hanging)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.models
async def test_a_sentence_is_intelligible_speech_at_the_voice_rate():
    """The default voice (with its sampling noise), resampled to 16 kHz, read back by Whisper."""
    _needs_piper()
    from operators.asr.whisper import WhisperEngine
    from tests.audio_fixtures import wer
    op = Synthesize("synthesize", SynthesizeConfig(sample_rate=16_000))
    await op.start()
    try:
        out = await drive(op, AgentSentence(session_id="s", turn=1, index=0, text=LONG))
    finally:
        await op.stop()
    audio = samples(b"".join(a.pcm for a in out))
    assert {a.sample_rate for a in out} == {16_000}
    seconds = len(audio) / 16_000
    assert 4.5 < seconds < 12, seconds                       # 26 words at 2-5 words a second
    assert np.sqrt(np.mean(audio ** 2)) > 0.02               # not silence
    heard = " ".join(s.text for s in WhisperEngine().transcribe(audio, words=False))
    assert wer(LONG, heard) <= 0.2, heard


@pytest.mark.models
async def test_native_rate_and_plausible_length(exact):
    pcm = await spoken(exact, SHORT)
    assert exact.sample_rate == exact.voice_rate == RATE
    assert 0.8 < len(pcm) / 2 / RATE < 3.5
    assert np.abs(samples(pcm)).max() > 0.1


@pytest.mark.models
async def test_first_piece_comes_before_the_rest_is_synthesized(exact, monkeypatch):
    asked: list[str] = []
    synthesize = exact._synthesize

    async def counting(clause: str) -> bytes:
        asked.append(clause)
        return await synthesize(clause)
    monkeypatch.setattr(exact, "_synthesize", counting)
    async for _first in exact.speak(LONG):
        assert asked == clauses(LONG)[:1]                    # 3 clauses not even asked for yet
        break


@pytest.mark.models
async def test_a_cancelled_utterance_leaves_the_next_one_clean(exact):
    alone = await spoken(exact, SHORT)
    proc = exact._procs[0]
    got: list[bytes] = []

    async def speak_long():
        async for piece in exact.speak(LONG):
            got.append(piece)
    task = asyncio.create_task(speak_long())
    await _until(lambda: got and proc.load == 1, "second clause in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert proc.load == 1                                    # abandoned, still being made
    assert await spoken(exact, SHORT) == alone               # not its leftovers, not shifted
    assert exact._procs[0] is proc and not list(proc.dir.iterdir())   # no stray files


@pytest.mark.models
async def test_a_child_killed_mid_sentence_is_restarted_and_the_sentence_finished(exact):
    whole = await spoken(exact, LONG)
    proc = exact._procs[0]
    got: list[bytes] = []

    async def speak_long():
        async for piece in exact.speak(LONG):
            got.append(piece)
    task = asyncio.create_task(speak_long())
    await _until(lambda: got and proc.load == 1, "second clause in flight")
    os.kill(proc.proc.pid, signal.SIGKILL)
    await asyncio.wait_for(task, 60)
    assert b"".join(got) == whole                            # the clause was redone, not lost
    assert exact._procs[0] is not proc and exact._procs[0].alive


@pytest.mark.models
async def test_a_child_past_its_bounds_is_replaced_without_a_gap():
    _needs_piper()
    engine = PiperEngine(SynthesizeConfig(noise_scale=0.0, noise_w=0.0, recycle_lines=25))
    await engine.start()
    try:
        first = engine._procs[0]
        whole = await spoken(engine, SHORT)
        for _ in range(30):                                  # the warm-up line counts too
            assert await spoken(engine, SHORT) == whole      # speech goes on meanwhile
            if engine.recycled:
                break
        await _until(lambda: not engine._recycling, "the replacement swapped in")
        assert engine.recycled == 1 and engine._procs[0] is not first
        assert first.proc.returncode is not None             # the old child is gone
        assert await spoken(engine, SHORT) == whole
    finally:
        await engine.close()


@pytest.mark.models
async def test_text_that_kills_piper_twice_is_an_error_and_the_engine_lives_on(exact):
    with pytest.raises(TtsError, match="died twice"):
        await spoken(exact, "...")                           # piper 1.8.0 crashes on no phonemes
    assert len(await spoken(exact, SHORT)) > RATE


async def test_a_voice_piper_cannot_load_is_a_clear_error(monkeypatch, tmp_path):
    _needs_piper()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    (tmp_path / "bad.onnx.json").write_text('{"audio": {"sample_rate": 22050}}')
    monkeypatch.setattr(piper_mod, "model_file", lambda name: bad)
    engine = PiperEngine(SynthesizeConfig())
    with pytest.raises(TtsError, match="piper did not start with voice 'en_US-joe-medium'"):
        await engine.start()
    await engine.close()


@pytest.mark.models
async def test_empty_text_says_nothing(exact):
    assert await spoken(exact, "") == b"" and await spoken(exact, " \n ") == b""


@pytest.mark.models
@pytest.mark.slow
async def test_a_very_long_sentence_is_spoken_whole(exact):
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)   # 72 words, no stops
    assert len(clauses(text)) >= 3
    seconds = len(await spoken(exact, text)) / 2 / RATE
    assert 15 < seconds < 45, seconds


# --- the operator -------------------------------------------------------------------------

@pytest.fixture
async def op(exact):
    synth = Synthesize("synthesize", EXACT, engine=exact)
    await synth.start()
    return synth


def sentence(index: int, text: str, turn: int = 1, session: str = "s1") -> AgentSentence:
    return AgentSentence(session_id=session, turn=turn, index=index, text=text)


@pytest.mark.models
async def test_operator_turns_events_into_pieces(op):
    out = await drive(op, sentence(0, "Hello there, how can I help you today?"))
    assert [a.seq for a in out] == list(range(len(out))) and len(out) > 3
    assert [bool(a.text) for a in out] == [True] + [False] * (len(out) - 1)
    assert [a.last for a in out] == [False] * (len(out) - 1) + [True]
    assert {len(a.pcm) for a in out[:-1]} == {RATE * 160 // 1000 * 2}
    assert {(a.session_id, a.turn, a.index, a.sample_rate, a.end_of_turn) for a in out} == {
        ("s1", 1, 0, RATE, False)}
    assert await drive(op, ToolActivity(session_id="s1", turn=1, name="search")) == []
    [nothing] = await drive(op, sentence(1, "[1]."))
    assert (nothing.pcm, nothing.text, nothing.last) == (b"", "[1].", True)
    [done] = await drive(op, AgentTurnDone(session_id="s1", turn=1, text="…"))
    assert (done.index, done.pcm, done.end_of_turn) == (2, b"", True)


@pytest.mark.models
async def test_operator_rejects_a_sentence_over_max_chars(exact):
    synth = Synthesize("synthesize", SynthesizeConfig(max_chars=20), engine=exact)
    with pytest.raises(Reject, match="max_chars is 20"):
        await drive(synth, sentence(0, LONG))


@pytest.mark.models
async def test_barge_in_stops_the_sentence_and_skips_the_rest_of_the_turn(op):
    got: list = []

    async def run():
        async for piece in op.process(sentence(0, LONG, turn=3, session="s2"), None):
            got.append(piece)
    task = asyncio.create_task(run())
    await _until(lambda: got, "first piece")
    task.cancel()                                            # what the runner does on Cancel
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(a.last for a in got)
    assert await drive(op, sentence(1, SHORT, turn=3, session="s2")) == []   # stale: skipped
    [done] = await drive(op, AgentTurnDone(session_id="s2", turn=3, interrupted=True))
    assert done.end_of_turn and done.index == 2
    assert (await drive(op, sentence(0, SHORT, turn=4, session="s2")))[-1].last  # next turn speaks


# --- on the bus -------------------------------------------------------------------------------

BUS_TOPOLOGY = """
name: tts
edges:
  said: {type: AgentEvent, mode: realtime}
  audio_out: {type: SpeechAudio, mode: realtime}
  errors: {type: Failure}
inputs: [said]
outputs: [audio_out, errors]
operators:
  - {name: synthesize, kind: synthesize, input: said, output: audio_out, ordered: true,
     concurrency: 2, config: {noise_scale: 0, noise_w: 0}}
"""


@pytest.mark.models
async def test_a_cancel_on_the_bus_cuts_the_turn_and_the_next_turn_is_clean(exact, nats_server,
                                                                          namespace):
    from topology import spec as topo_spec
    from topology.app import Deployment
    from topology.jobs import cancel
    from schemas import Headers, SpeechAudio, decoder
    dep = await Deployment.open(topo_spec.parse(BUS_TOPOLOGY), nats_server.url, namespace)
    await dep.start_operators()
    try:
        heard: list[SpeechAudio] = []

        async def on_audio(msg):
            heard.append(decoder(SpeechAudio).decode(msg.data))
        await dep.bus.nc.subscribe(dep.bus.subjects.edge("audio_out", "b1"), cb=on_audio)

        async def say(event):
            await dep.bus.nc.publish(dep.bus.subjects.edge("said", "b1"),
                                     msgspec.msgpack.encode(event), headers={Headers.SESSION: "b1"})
        for i, text in enumerate([LONG, SHORT, SHORT]):     # queued behind the first
            await say(sentence(i, text, session="b1"))
        await _until(lambda: heard, "first piece on the bus")
        await cancel(dep.bus, session_id="b1", reason="user spoke")
        await say(AgentTurnDone(session_id="b1", turn=1, interrupted=True))
        await say(sentence(0, SHORT, turn=2, session="b1"))
        await say(AgentTurnDone(session_id="b1", turn=2))
        await _until(lambda: any(a.end_of_turn and a.turn == 2 for a in heard), "turn 2 done")
    finally:
        await dep.close()
    first = [a for a in heard if a.turn == 1 and not a.end_of_turn]
    assert {a.index for a in first} == {0} and not any(a.last for a in first)   # cut, rest skipped
    assert [a.index for a in heard if a.end_of_turn] == [3, 1]
    second = b"".join(a.pcm for a in heard if a.turn == 2)
    assert second == await spoken(exact, SHORT)           # the same voice, clean after the cut


# --- espeak-ng --------------------------------------------------------------------------------

@pytest.fixture
async def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: bash infra/espeak.sh (apt-get install espeak-ng)")
    engine = EspeakEngine(SynthesizeConfig())
    await engine.start()
    return engine


async def test_espeak_speaks_in_pieces_and_stops_on_close(espeak):
    pcm = await spoken(espeak, SHORT)
    assert 0.8 < len(pcm) / 2 / RATE < 4 and np.abs(samples(pcm)).max() > 0.1
    assert await spoken(espeak, "") == b""
    pieces = espeak.speak(LONG)
    first = await pieces.__anext__()
    assert len(first) == RATE * 160 // 1000 * 2
    await pieces.aclose()                                    # barge-in: its process is killed
    assert await spoken(espeak, SHORT) == pcm                # espeak is deterministic


async def test_espeak_operator_and_a_bad_voice(espeak):
    synth = Synthesize("synthesize", SynthesizeConfig(), engine=espeak)
    out = await drive(synth, sentence(0, SHORT))
    assert out[0].text == SHORT and out[-1].last and sum(len(a.pcm) for a in out) > RATE
    fast = EspeakEngine(SynthesizeConfig(speed=1.5))
    await fast.start()
    assert len(await spoken(fast, SHORT)) < 0.8 * sum(len(a.pcm) for a in out)
    with pytest.raises(TtsError, match="espeak-ng voice 'xx-nope'"):
        await EspeakEngine(SynthesizeConfig(espeak_voice="xx-nope")).start()
