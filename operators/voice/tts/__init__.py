"""Text to speech for the synthesize operator: text normalisation and the speech engines.

    engine.py     the SpeechEngine protocol, TtsError, pieces of piece_ms (resampled if asked)
    normalize.py  what a voice should say for text written for the eye
    piper.py      the embedded neural voice: piper-tts CLI children (GPL-3.0, never imported)
    espeak.py     the light fallback: one espeak-ng process per utterance

Engines load lazily (operators/registry.py names them), so importing this package costs nothing.
"""
