"""Languages in and out: which language an idea is written in, and a translator for models that read or write only
English (the embedded SmolLM2-135M does: it copies a Chinese idea or invents an English one, never translates).

    from enhancer.enhance.language import Translator, detect_language
    detect_language("一只橘猫在雨中奔跑")          # "zh"
    Translator("http://127.0.0.1:8000/v1").translate(["一只橘猫在雨中奔跑"], "en")

A translator is any OpenAI-compatible chat endpoint (a URL) or a local transformers model folder: a chat model
(asked with a translation instruction through enhancer's own transformers engine) or a sequence-to-sequence
translation model (Marian, NLLB, M2M, T5, run with generate; one whose direction is fixed, such as opus-mt-zh-en,
translates only that way).

`detect_language` reads the writing system (Han, kana, Hangul, Arabic, Cyrillic, Devanagari, Thai, Hebrew, Greek)
and, for Latin script, counts function words of Spanish, German, French, Portuguese and Italian. It is a
routing aid: when it cannot tell, it says English, and the idea goes to the model as it is.
"""

from __future__ import annotations

import re
import threading

LANGUAGES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "ru": "Russian",
    "uk": "Ukrainian", "hi": "Hindi", "th": "Thai", "he": "Hebrew", "el": "Greek", "es": "Spanish",
    "de": "German", "fr": "French", "pt": "Portuguese", "it": "Italian", "nl": "Dutch", "pl": "Polish",
    "tr": "Turkish", "vi": "Vietnamese", "id": "Indonesian",
}  # fmt: skip

# Writing systems, checked in order: kana before Han (Japanese mixes both), Hangul, then the rest.
SCRIPTS = (
    ("ja", re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("ar", re.compile(r"[\u0600-\u06ff\u0750-\u077f]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
)
# Short function words that English prompts do not use; two or more of one language's, and more than of any
# other, name it. (One alone is not enough: "la" and "die" occur in English ideas.)
FUNCTION_WORDS = {
    "es": "el la los las un una unos unas del al con en por para que y sobre bajo entre sus su muy".split(),
    "de": "der die das den dem des ein eine einer einem und mit im auf unter über bei vom zum zur ist".split(),
    "fr": "le la les un une des du au aux et avec dans sur sous entre sa son ses très est".split(),
    "pt": "o os um uma uns umas da dos das na nos nas com em por para e sobre sob".split(),
    "it": "il lo la gli le un una uno del della dei degli nel nella con su per e sotto tra".split(),
}
# English's own, counted against them: a foreign language must outnumber English to be named ("a" is also
# Portuguese, "die" and "den" are also English words).
ENGLISH_WORDS = set("a an the of in on at to with and by for from into over under is are its his her their".split())
QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|「[^」]*」|『[^』]*』|«[^»]*»")


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


def check_language(code: object) -> str:
    """An output language code ('en', 'zh', ...): lower-cased, or a ValueError listing the known ones."""
    if not isinstance(code, str) or code.strip().lower() not in LANGUAGES:
        raise ValueError(f"unknown language {code!r}: use an ISO 639-1 code, one of {', '.join(LANGUAGES)}")
    return code.strip().lower()


def detect_language(text: str) -> str:
    """The language `text` is written in, as an ISO 639-1 code; "en" when it cannot tell. Quoted text (words to
    render on screen) does not count: an English idea may show a sign in any script."""
    unquoted = QUOTED.sub(" ", text)
    letters = [c for c in unquoted if c.isalpha()]
    if not letters:
        return "en"
    for code, pattern in SCRIPTS:
        if len(pattern.findall(unquoted)) >= max(1, len(letters) // 5):
            return code
    words = re.findall(r"[^\W\d_]+", unquoted.lower())
    counts = {code: sum(word in vocabulary for word in words) for code, vocabulary in FUNCTION_WORDS.items()}
    best = max(counts, key=counts.get)
    ranked = sorted(counts.values(), reverse=True)
    english = sum(word in ENGLISH_WORDS for word in words)
    if ranked[0] >= 2 and ranked[0] > ranked[1] and ranked[0] > english and ranked[0] * 5 >= len(words):
        return best
    return "en"


def translation_messages(text: str, target: str, source: str | None = None) -> list[dict[str, str]]:
    frm = f" from {language_name(source)}" if source and source != "en" else ""
    return [
        {
            "role": "system",
            "content": (
                f"You translate prompts for video generation{frm} into {language_name(target)}. Translate every "
                "fact: subjects, counts, colours, actions, places, styles. Keep names, numbers and any text inside "
                "quotation marks exactly as written. Output only the translation, with no notes."
            ),
        },
        {"role": "user", "content": text},
    ]


class Translator:
    """Translates ideas and prompts through `source`: an OpenAI-compatible endpoint (http(s) URL) or a local
    transformers model folder. `translate(texts, target, source=None)` returns one item per text: the
    translation, or the exception that stopped it (one failure never sinks a batch)."""

    def __init__(self, source: str, *, model: str | None = None, api_key: str | None = None, timeout: float = 60.0):
        self.source = source
        self._pipeline = None
        self._engine = None
        self._lock = threading.Lock()
        if source.startswith(("http://", "https://")):
            from enhancer.enhance.engines import OpenAIEngine

            self._engine = OpenAIEngine(model, source, api_key=api_key, timeout=timeout)
            return
        from pathlib import Path

        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"translator {source!r} is neither an http(s) URL of an OpenAI-compatible endpoint nor a model "
                "folder with a config.json (a local translation or chat model)"
            )
        from transformers import AutoConfig

        if AutoConfig.from_pretrained(folder).is_encoder_decoder:  # transformers 5 has no translation pipeline
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            self._pipeline = (AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder))
        else:
            from enhancer.enhance.engines import TransformersEngine

            self._engine = TransformersEngine(str(folder), None)

    @property
    def label(self) -> str:
        return self.source

    def translate(self, texts: list[str], target: str, source: str | None = None) -> list[str | Exception]:
        if not texts:
            return []
        if self._pipeline is not None:
            return self._seq2seq(texts)
        generations = self._engine.generate(
            [translation_messages(text, target, source) for text in texts],
            n=1,
            seed=0,
            temperature=0.0,
            max_new_tokens=min(1024, 64 + 4 * max(len(text) for text in texts)),
        )
        results: list[str | Exception] = []
        for generation in generations:
            if isinstance(generation, Exception):
                results.append(generation)
                continue
            text = _clean(generation.texts[0])
            results.append(text or ValueError("the translator answered nothing"))
        return results

    def _seq2seq(self, texts: list[str]) -> list[str | Exception]:
        """A translation model's own direction (Marian/opus-mt is one pair; NLLB/M2M take their language codes from
        the tokenizer's settings), greedy, in one batch."""
        import torch

        tokenizer, model = self._pipeline
        with self._lock, torch.inference_mode():
            try:
                batch = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=512)
                output = model.generate(**batch, max_new_tokens=min(512, 2 * batch["input_ids"].shape[1] + 16))
                decoded = tokenizer.batch_decode(output, skip_special_tokens=True)
            except Exception as error:  # the whole batch failed
                return [error] * len(texts)
        return [_clean(text) or ValueError("the translation model answered nothing") for text in decoded]


PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|here(?:'s| is)[^:\n]*|translation)\s*[:,!.]\s*)+", re.IGNORECASE
)


def _clean(text: str) -> str:
    from enhancer.enhance.engines import strip_thinking

    text = PREAMBLE.sub("", strip_thinking(text)[0]).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text
