"""The default, network-free diary formatter: deterministic text rules, YAKE and VADER.

`format_transcript` is a pure function (no Django, no database, no network), so it can be
tested and reused anywhere; `RulesFormatter` is the thin `DiaryFormatter` wrapper.

The one promise it keeps above all: it never invents words. Cleaning only removes fillers
and stutters, moves punctuation and changes letter case; the title, tags and summary are cut
from the cleaned text. The single exception is the fixed title "Diary entry" (`EMPTY_TITLE`),
used only when nothing was said (no words left after cleaning).
"""

from __future__ import annotations

import functools
import math
import re
from typing import NamedTuple

import yake
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from transcription.engines.base import Transcript
from transcription.formatters.base import EntryDraft

NAME = "rules"
# The only words the formatter may write that were not spoken: the title of an empty entry.
EMPTY_TITLE = "Diary entry"

MAX_PARAGRAPH_WORDS = 120
MAX_TITLE_WORDS = 8
MAX_TITLE_CHARS = 80
MAX_SUMMARY_CHARS = 300
MAX_TAGS = 5
# YAKE's cost grows with the text (about 60 ms for 3000 words, more with many distinct
# phrases); a diary entry's keyphrases are settled well before 3000 words, so longer
# transcripts are cut for keyword extraction only (the summary still scores every sentence).
YAKE_MAX_WORDS = 3000
YAKE_MAX_CHARS = 20_000  # bounds scripts written without spaces (zh, ja), where "words" are huge.

# VADER thresholds: the conventional ±0.05 for the label, ±0.5 for a "clearly" felt sentence.
MOOD_THRESHOLD = 0.05
STRONG_SENTENCE = 0.5

# Hesitation sounds removed in every language, plus ones that are real words elsewhere
# ("um" is Portuguese "one" and German "around", "er" is German "he"), so English only.
_FILLERS_ANY = re.compile(r"u+h+|u+h+m+|h+m+|e+r+m+|e+h+m+|ä+h+m*|ö+h+m*|e+u+h+", re.IGNORECASE)
_FILLERS_EN = re.compile(r"u+m+|er|a+h+", re.IGNORECASE)
# Repeats that are grammatical in English ("I know that that is", "it had had"), never collapsed.
_REPEATS_EN = frozenset({"that", "had", "is"})
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "vs", "prof", "jr", "sr", "e.g", "i.e"})
_PRONOUN_I = re.compile(r"i(?:['’](?:m|ve|ll|d))?")
_TITLE_SMALL_WORDS_EN = frozenset(
    {"a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "by", "with"}
)
# Words every diary entry mentions; useless as tags.
_GENERIC_TAGS_EN = frozenset(
    {"today", "yesterday", "tomorrow", "morning", "evening", "night", "day", "week", "time"}
    | {"yeah", "okay", "ok", "like", "lot", "thing", "things", "stuff", "bit", "kind", "sort"}
)

_TERMINAL = ".!?…。！？"
_CLOSERS = "\"'”’»)]}"
_CJK_TERMINAL_SPLIT = re.compile(r"(?<=[。！？])(?=.)")
_TOKEN = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
_WORD = re.compile(r"\w+")
# A keyphrase: words (with inner apostrophes or hyphens) separated by single spaces, no punctuation.
_PHRASE = re.compile(r"\w+(?:['’-]\w+)*(?: \w+(?:['’-]\w+)*)*")


class _Tok(NamedTuple):
    lead: str
    core: str  # starts and ends with a word character, or is empty for pure punctuation
    trail: str

    @classmethod
    def of(cls, text: str) -> _Tok:
        match = _TOKEN.match(text)
        assert match is not None  # the pattern matches any string
        lead, core, trail = match.groups()
        if not core:  # pure punctuation: keep it all in `lead`
            return cls(lead + trail, "", "")
        return cls(lead, core, trail)

    def __str__(self) -> str:
        return self.lead + self.core + self.trail


class _Language(NamedTuple):
    code: str
    english: bool
    stopwords: frozenset[str]


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    # Built once per process: the constructor reads VADER's lexicon files.
    return SentimentIntensityAnalyzer()


@functools.lru_cache(maxsize=64)
def _stopwords(code: str) -> frozenset[str]:
    # YAKE ships stop word lists per language (falling back to a language-neutral one).
    return frozenset(yake.KeywordExtractor(lan=code).stopword_set)


def _language(transcript: Transcript) -> _Language:
    code = (transcript.language or "").strip().lower()
    yake_code = code or "en"
    return _Language(code=yake_code, english=code.startswith("en"), stopwords=_stopwords(yake_code[:2]))


# --- cleaning ---------------------------------------------------------------------------


def _is_filler(core: str, lang: _Language) -> bool:
    return bool(_FILLERS_ANY.fullmatch(core) or (lang.english and _FILLERS_EN.fullmatch(core)))


def _is_stutter(prev: _Tok, tok: _Tok, lang: _Language) -> bool:
    """The same word twice in a row with nothing but a dash between: "I I went", "the- the"."""
    word = prev.core.lower()
    if not word or word != tok.core.lower() or tok.lead or prev.trail not in ("", "-", "–", "—"):
        return False
    if not any(ch.isalpha() for ch in word):
        return False  # "10 10" may be a score
    if lang.english:
        return word not in _REPEATS_EN
    # Elsewhere repeated function words are often grammatical (German "die die", French
    # "nous nous"), so only content words are collapsed.
    return word not in lang.stopwords


def _drop_filler(out: list[_Tok], filler: _Tok) -> None:
    """Forget a filler, keeping sentence-ending punctuation and dropping the commas it caused."""
    if not out:
        return
    prev = out[-1]
    terminal = re.search(r"[.!?…]+", filler.trail)
    if terminal:  # "I went home, um." -> "I went home."
        if not prev.trail.rstrip(_CLOSERS).endswith(tuple(_TERMINAL)):
            out[-1] = prev._replace(trail=prev.trail.rstrip(",;:") + terminal.group())
    elif prev.trail.endswith(","):  # "So, um, I went" -> "So I went"
        out[-1] = prev._replace(trail=prev.trail[:-1])


def _fix_punctuation(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" \.(?=[^\W\d_]{2})", ". ", text)  # "world .how" (a segment joint) -> "world. how"
    text = re.sub(r"\s+([,.;:!?…%)\]}。！？、，])", r"\1", text)  # "word ," -> "word,"
    text = re.sub(r"([(\[{])\s+", r"\1", text)  # "( word" -> "(word"
    text = re.sub(r"([,;:!?])(?=[^\W\d_])", r"\1 ", text)  # "one,two" -> "one, two" (not "1,000")
    text = re.sub(r"([,;:])[,;:]+", r"\1", text)  # ",," -> ","
    text = re.sub(r"[,;:]+([.!?…])", r"\1", text)  # ",." -> "."
    text = re.sub(r"([.!?…])[,;:]+", r"\1", text)  # ".," -> "."
    text = re.sub(r"\.{4,}", "...", text)
    text = re.sub(r"([!?])\1+", r"\1", text)
    return text


def _ends_sentence(tok: _Tok) -> bool:
    trail = (tok.trail or tok.lead).rstrip(_CLOSERS)
    if not trail or trail.endswith(("...", "…")):
        return False  # an ellipsis is a trailing-off, not necessarily a full stop
    if trail[-1] in "!?。！？":
        return True
    return trail[-1] == "." and not (tok.trail.startswith(".") and tok.core.lower() in _ABBREVIATIONS)


def _capitalise_first(word: str) -> str:
    first = word[:1]
    upper = first.upper()
    # len check: "ß".upper() is "SS", which would change the word.
    return upper + word[1:] if first.islower() and len(upper) == 1 else word


def _capitalise(text: str, lang: _Language) -> str:
    out = []
    sentence_start = True
    for raw in text.split(" "):
        tok = _Tok.of(raw)
        if tok.core:
            if sentence_start:
                tok = tok._replace(core=_capitalise_first(tok.core))
            elif lang.english and _PRONOUN_I.fullmatch(tok.core):
                tok = tok._replace(core="I" + tok.core[1:])
            sentence_start = _ends_sentence(tok)
        else:
            sentence_start = sentence_start or _ends_sentence(tok)
        out.append(str(tok))
    return " ".join(out)


def _end_paragraph(text: str, lang: _Language) -> str:
    text = re.sub(r"[\s,;:\-–—]+$", "", text)
    if text and not text.rstrip(_CLOSERS).endswith(tuple(_TERMINAL)):
        text += "。" if lang.code.startswith(("zh", "ja")) else "."
    return text


def _clean_text(text: str, lang: _Language) -> str:
    """Remove fillers and stutters, fix spacing, punctuation and case of one paragraph."""
    out: list[_Tok] = []
    for raw in _fix_punctuation(text).split(" "):
        if not raw:
            continue
        tok = _Tok.of(raw)
        if tok.core and _is_filler(tok.core, lang):
            _drop_filler(out, tok)
        elif out and _is_stutter(out[-1], tok, lang):
            out[-1] = out[-1]._replace(trail=tok.trail)  # keep the first's case, the last's punctuation
        else:
            out.append(tok)
    if not any(tok.core for tok in out):
        return ""
    text = _fix_punctuation(" ".join(str(tok) for tok in out))
    text = re.sub(r"^[,.;:!?…]+\s*", "", text)  # punctuation left over from a dropped opening filler
    return _end_paragraph(_capitalise(text, lang), lang)


# --- structure --------------------------------------------------------------------------


def _raw_paragraphs(transcript: Transcript, paragraph_pause: float) -> list[str]:
    """Group segment texts, starting a new paragraph after a pause of `paragraph_pause` seconds.

    A pause does not split a sentence that is clearly still going on (the text before it has
    no closing punctuation and the text after it starts in lower case): "I went to the" / "shop".
    """
    paragraphs: list[list[str]] = []
    prev_end: float | None = None
    for seg in transcript.segments:
        text = seg.text.strip()
        if not text:
            continue  # silent segments neither hold text nor end a pause
        if paragraphs and prev_end is not None and seg.start - prev_end >= paragraph_pause:
            before = paragraphs[-1][-1].rstrip(_CLOSERS)
            first_letter = next((ch for ch in text if ch.isalpha()), "")
            continues = not before.endswith(tuple(_TERMINAL)) and first_letter.islower()
            if not continues:
                paragraphs.append([])
        if not paragraphs:
            paragraphs.append([])
        paragraphs[-1].append(text)
        prev_end = seg.end
    return [" ".join(parts) for parts in paragraphs]


def _split_sentences(paragraph: str) -> list[str]:
    """Sentences of a cleaned paragraph, in order.

    Words joined without spaces (zh, ja) are also cut after their full stops; such a piece
    always ends its sentence, so joining a sentence's pieces with spaces restores the text.
    """
    tokens = [piece for raw in paragraph.split(" ") for piece in _CJK_TERMINAL_SPLIT.split(raw) if piece]
    sentences: list[str] = []
    current: list[str] = []
    for i, raw in enumerate(tokens):
        current.append(raw)
        tok = _Tok.of(raw)
        ends = _ends_sentence(tok)
        if not ends and (tok.trail or tok.lead).rstrip(_CLOSERS).endswith(("...", "…")) and i + 1 < len(tokens):
            # After an ellipsis a capital letter (capitalised by the speaker's engine) starts a sentence.
            nxt = next((ch for ch in tokens[i + 1] if ch.isalpha()), "")
            ends = nxt.isupper()
        if ends:
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _split_long(paragraph: str) -> list[str]:
    """Break a paragraph of more than MAX_PARAGRAPH_WORDS words at sentence boundaries."""
    if len(paragraph.split()) <= MAX_PARAGRAPH_WORDS:
        return [paragraph]
    chunks: list[list[str]] = [[]]
    count = 0
    for sentence in _split_sentences(paragraph):
        words = len(sentence.split())
        if chunks[-1] and count + words > MAX_PARAGRAPH_WORDS:
            chunks.append([])
            count = 0
        chunks[-1].append(sentence)
        count += words
    return [" ".join(chunk) for chunk in chunks]


# --- title, tags, summary, mood ----------------------------------------------------------


def _keyphrases(text: str, lang: _Language) -> list[str]:
    """YAKE keyphrases of up to three words, best first, limited to the start of long texts."""
    words = text.split()
    sample = " ".join(words[:YAKE_MAX_WORDS])[:YAKE_MAX_CHARS]
    # A new extractor per call: it is cheap (a cached stop word list aside) and keeps
    # per-instance caches out of threads that share this module.
    extractor = yake.KeywordExtractor(lan=lang.code, n=3, top=30, dedup_lim=0.9)
    spoken = set(_WORD.findall(text.lower()))
    phrases = []
    for phrase, _score in extractor.extract_keywords(sample):
        phrase = " ".join(phrase.split())
        # YAKE tokenises on its own; keep only phrases made of words that are in the text.
        if _PHRASE.fullmatch(phrase) and set(_WORD.findall(phrase.lower())) <= spoken:
            phrases.append(phrase)
    return phrases


def _make_title(phrases: list[str], sentences: list[str], lang: _Language) -> str:
    if not sentences:
        return EMPTY_TITLE
    # Prefer a multi-word phrase among the best three ("Dentist Appointment" over "Dentist").
    best = next((p for p in phrases[:3] if len(p.split()) > 1), "")
    if best:
        words = best.split()
        if lang.english:
            words = [
                w.lower() if (i and w.lower() in _TITLE_SMALL_WORDS_EN) else _capitalise_first(w)
                for i, w in enumerate(words)
            ]
        else:
            words[0] = _capitalise_first(words[0])
    else:
        # The opening words say more than a lone keyword ("Today I went to the dentist" over
        # "Today"); stop words left dangling at the cut are dropped ("... to the").
        words = sentences[0].split()[:MAX_TITLE_WORDS]
        while len(words) > 1 and _Tok.of(words[-1]).core.lower() in lang.stopwords:
            words.pop()
    title = " ".join(words[:MAX_TITLE_WORDS])
    while len(title) > MAX_TITLE_CHARS and " " in title:
        title = title.rsplit(" ", 1)[0]
    title = title[:MAX_TITLE_CHARS].strip(" ,;:-–—.…。，、")
    return title or _WORD.findall(sentences[0])[0][:MAX_TITLE_CHARS]  # sentences all hold a word


def _make_tags(phrases: list[str], lang: _Language) -> tuple[str, ...]:
    tags: list[str] = []
    for phrase in phrases:
        tag = phrase.lower()
        words = tag.split()
        if len(words) > 2 or len(tag) < 2 or tag.isdigit():
            continue
        if lang.english and tag in _GENERIC_TAGS_EN:
            continue
        padded = f" {tag} "
        if any(padded in f" {kept} " or f" {kept} " in padded for kept in tags):
            continue  # "dentist" adds nothing next to "dentist appointment"
        tags.append(tag)
        if len(tags) == MAX_TAGS:
            break
    return tuple(tags)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-–—") + "…"


def _make_summary(sentences: list[str], phrases: list[str], scores: list[float], lang: _Language) -> str:
    """The one or two most salient sentences, in spoken order.

    Salience: the keyphrases a sentence holds, per square root of its
    length so long sentences do not win by size alone, plus its emotional intensity (VADER).
    """
    if len(sentences) <= 1:
        return _shorten(sentences[0], MAX_SUMMARY_CHARS) if sentences else ""
    # YAKE's ranking leans on position (early words rank high), so the ranks are not used:
    # every top keyphrase counts, by its number of words (a two-word hit is more specific).
    weights = [(re.compile(r"(?<!\w)" + re.escape(p.lower()) + r"(?!\w)"), len(p.split())) for p in phrases[:20]]
    ranked = []
    for i, sentence in enumerate(sentences):
        lowered = sentence.lower()
        n_words = len(sentence.split())
        hits = sum(weight for pattern, weight in weights if pattern.search(lowered))
        score = hits / math.sqrt(n_words) + 0.5 * abs(scores[i])
        if n_words < 4:
            score *= 0.5  # "Yeah." is rarely the gist
        ranked.append((score, -i))
    best = sorted(ranked, reverse=True)[:2]
    joiner = "" if lang.code.startswith(("zh", "ja")) else " "  # scripts written without spaces
    chosen = sorted(-neg_i for _score, neg_i in best)
    summary = joiner.join(sentences[i] for i in chosen)
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = sentences[-best[0][1]]
    return _shorten(summary, MAX_SUMMARY_CHARS)


def _mood(body: str, scores: list[float], lang: _Language) -> tuple[str, float]:
    if not lang.english or not body:
        return "neutral", 0.0  # VADER's lexicon is English; elsewhere we do not guess.
    compound = round(_analyzer().polarity_scores(body)["compound"], 3)
    if any(s >= STRONG_SENTENCE for s in scores) and any(s <= -STRONG_SENTENCE for s in scores):
        return "mixed", compound
    if compound >= MOOD_THRESHOLD:
        return "positive", compound
    if compound <= -MOOD_THRESHOLD:
        return "negative", compound
    return "neutral", compound


# --- entry points -----------------------------------------------------------------------


def format_transcript(transcript: Transcript, *, paragraph_pause: float = 2.0) -> EntryDraft:
    """Turn a transcript into an entry draft with rules only: no network, no database."""
    lang = _language(transcript)
    paragraphs: list[str] = []
    for raw in _raw_paragraphs(transcript, paragraph_pause):
        cleaned = _clean_text(raw, lang)
        if cleaned:
            paragraphs.extend(_split_long(cleaned))
    sentences = [s for p in paragraphs for s in _split_sentences(p) if _WORD.search(s)]
    body = " ".join(paragraphs)
    scores = [_analyzer().polarity_scores(s)["compound"] for s in sentences] if lang.english else [0.0] * len(sentences)
    phrases = _keyphrases(body, lang) if body else []
    mood_label, mood_score = _mood(body, scores, lang)
    return EntryDraft(
        title=_make_title(phrases, sentences, lang),
        paragraphs=tuple(paragraphs),
        summary=_make_summary(sentences, phrases, scores, lang),
        mood_label=mood_label,
        mood_score=mood_score,
        tags=_make_tags(phrases, lang),
        language=transcript.language,
        formatter=NAME,
        usage={},
    )


class RulesFormatter:
    """The default diary formatter (see `format_transcript`)."""

    name = NAME

    def __init__(self, paragraph_pause: float = 2.0) -> None:
        self.paragraph_pause = paragraph_pause

    @classmethod
    def from_settings(cls) -> RulesFormatter:
        from django.conf import settings  # imported here: the module itself stays free of Django

        return cls(paragraph_pause=settings.RULES_PARAGRAPH_PAUSE_SECONDS)

    def format(self, transcript: Transcript) -> EntryDraft:
        return format_transcript(transcript, paragraph_pause=self.paragraph_pause)
