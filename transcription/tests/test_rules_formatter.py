"""The rules formatter: pure tests (no database, no network)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

from transcription.engines.base import Segment, Transcript
from transcription.formatters.base import EntryDraft
from transcription.formatters.rules import EMPTY_TITLE, RulesFormatter, format_transcript

ROOT = Path(__file__).resolve().parents[2]


def transcript(*texts: str, language: str = "en", gap: float = 0.3, seconds: float = 3.0) -> Transcript:
    """Segments `seconds` long, `gap` seconds apart."""
    segments, start = [], 0.0
    for text in texts:
        segments.append(Segment(start=start, end=start + seconds, text=text))
        start += seconds + gap
    return Transcript(language=language, segments=tuple(segments), duration=start)


def timed(*items: tuple[float, float, str], language: str = "en") -> Transcript:
    return Transcript(language=language, segments=tuple(Segment(a, b, t) for a, b, t in items))


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def assert_only_spoken_words(tr: Transcript, draft: EntryDraft) -> None:
    spoken = words(tr.text)
    for part in (draft.title, draft.body, draft.summary, *draft.tags):
        invented = words(part) - spoken
        assert not invented, f"invented {invented} in {part!r}"


def body(*texts: str, language: str = "en") -> tuple[str, ...]:
    return format_transcript(transcript(*texts, language=language)).paragraphs


# --- cleaning ---------------------------------------------------------------------------


def test_fillers_are_removed_with_the_commas_they_caused() -> None:
    assert body("Um, so I, uh, went home, um.") == ("So I went home.",)
    assert body("Hmm... I was, erm, thinking uhm about er the garden, ah, again") == (
        "I was thinking about the garden again.",
    )


def test_a_trailing_filler_keeps_the_sentence_end() -> None:
    assert body("Did you see that, uh?") == ("Did you see that?",)


def test_english_fillers_that_are_words_elsewhere_are_kept_in_german() -> None:
    # "er" is "he" and "um" is "at/around" in German; only hesitation sounds go.
    assert body("äh er kommt um acht Uhr, ähm, nach Hause", language="de") == ("Er kommt um acht Uhr nach Hause.",)


def test_immediate_duplicate_words_are_collapsed() -> None:
    assert body("I I went to the the shop") == ("I went to the shop.",)
    assert body("we- we went to to to Paris") == ("We went to Paris.",)
    assert body("I, um, I think so") == ("I think so.",)


def test_grammatical_repeats_are_kept() -> None:
    assert body("I know that that is true and it had had an effect") == (
        "I know that that is true and it had had an effect.",
    )
    # German relative pronoun + article, a stop word there.
    assert body("Die Frau, die die Blumen kauft", language="de") == ("Die Frau, die die Blumen kauft.",)
    # A repeated word separated by a sentence end is two sentences.
    assert body("I went home. Home was quiet.") == ("I went home. Home was quiet.",)


def test_capitalises_sentence_starts_and_the_pronoun_i() -> None:
    assert body("i think i'm fine. i've been good! what do i do? i'll see") == (
        "I think I'm fine. I've been good! What do I do? I'll see.",
    )
    # Never lower-cases anything, and leaves abbreviations alone.
    assert body("we saw Dr. Smith and NASA today") == ("We saw Dr. Smith and NASA today.",)
    assert body("we saw dr. smith") == ("We saw dr. smith.",)


def test_lower_case_i_is_only_a_pronoun_in_english() -> None:
    assert body("vado a casa e i bambini dormono", language="it") == ("Vado a casa e i bambini dormono.",)


def test_fixes_spacing_and_punctuation() -> None:
    assert body("hello ,  world .how are you ?i am fine ,thanks") == ("Hello, world. How are you? I am fine, thanks.",)
    assert body("it cost 1,000 dollars ( roughly ) ,, and then ;") == ("It cost 1,000 dollars (roughly), and then.",)


def test_every_paragraph_ends_with_terminal_punctuation() -> None:
    paragraphs = format_transcript(
        timed((0, 2, "first thought,"), (5, 7, "Second thought"), (10, 12, "Third one?"), (15, 17, "Fourth one..."))
    ).paragraphs
    assert paragraphs == ("First thought.", "Second thought.", "Third one?", "Fourth one...")


# --- paragraphs -------------------------------------------------------------------------


def test_paragraphs_split_at_pauses_of_at_least_the_threshold() -> None:
    tr = timed(
        (0.0, 2.0, "One."),
        (2.5, 4.0, "Two."),  # 0.5 s: same paragraph
        (6.0, 8.0, "Three."),  # 2.0 s: exactly the threshold, new paragraph
        (9.9, 11.0, "Four."),  # 1.9 s: same paragraph
        (14.0, 15.0, "Five."),  # 3.0 s: new paragraph
    )
    assert format_transcript(tr).paragraphs == ("One. Two.", "Three. Four.", "Five.")
    assert RulesFormatter().format(tr).paragraphs == ("One. Two.", "Three. Four.", "Five.")
    assert RulesFormatter(paragraph_pause=2.5).format(tr).paragraphs == ("One. Two. Three. Four.", "Five.")
    assert RulesFormatter(paragraph_pause=10).format(tr).paragraphs == ("One. Two. Three. Four. Five.",)
    assert len(format_transcript(tr, paragraph_pause=0.4).paragraphs) == 5


def test_silent_and_filler_only_segments_neither_make_paragraphs_nor_hide_pauses() -> None:
    tr = timed((0, 2, "One."), (2, 9, "  "), (9, 10, "Two."), (10.5, 11, "Um."), (14, 15, "Three."))
    assert format_transcript(tr).paragraphs == ("One.", "Two.", "Three.")


def test_a_pause_inside_an_unfinished_sentence_does_not_split_it() -> None:
    tr = timed((0, 2, "Today I went to the"), (6, 8, "shop and bought bread."), (12, 13, "Then I slept."))
    assert format_transcript(tr).paragraphs == ("Today I went to the shop and bought bread.", "Then I slept.")


def test_long_paragraphs_break_at_sentence_boundaries() -> None:
    sentences = [f"Sentence number {i} has exactly eight words here." for i in range(40)]
    paragraphs = format_transcript(transcript(" ".join(sentences))).paragraphs
    assert len(paragraphs) == 3  # 320 words, at most 120 (15 sentences of 8 words) per paragraph
    assert [p.count(".") for p in paragraphs] == [15, 15, 10]
    assert " ".join(paragraphs) == " ".join(sentences)


# --- title, summary, tags ---------------------------------------------------------------

DENTIST = (
    "Um, today I went to the dentist for my dentist appointment.",
    "The dentist appointment was fine but my tooth still hurts a lot.",
    "Afterwards I met Sarah for coffee at the new cafe downtown.",
    "We talked about her trip to Portugal and I felt really happy.",
    "In the evening I watered the garden.",
)


def test_title_is_a_short_spoken_keyphrase() -> None:
    tr = transcript(*DENTIST)
    draft = format_transcript(tr)
    assert draft.title == "Dentist Appointment"
    assert_only_spoken_words(tr, draft)


def test_title_falls_back_to_the_opening_words() -> None:
    # No multi-word keyphrase: the first words, cut to eight and without a dangling "the".
    draft = format_transcript(transcript("Today I went to the dentist in the morning and it was awful."))
    assert draft.title == "Today I went to the dentist"
    assert format_transcript(transcript("Yes. Okay.")).title == "Yes"


def test_title_is_at_most_eight_words_and_eighty_characters() -> None:
    long_words = " ".join(["Incomprehensibilities"] * 3 + ["extraordinarily", "uncharacteristically"] * 4)
    for tr in (transcript(long_words + "."), transcript(*DENTIST), transcript("a " * 30)):
        title = format_transcript(tr).title
        assert 0 < len(title) <= 80 and len(title.split()) <= 8, title


def test_summary_is_the_most_salient_sentences_in_spoken_order() -> None:
    assert format_transcript(transcript(*DENTIST)).summary == (
        "The dentist appointment was fine but my tooth still hurts a lot. "
        "Afterwards I met Sarah for coffee at the new cafe downtown."
    )
    tr = transcript(
        "Okay.",
        "The dentist appointment was horrible and painful.",
        "Then I went back home.",
        "Yeah.",
        "I read a book about the dentist appointment and felt wonderful.",
        "Then I went to bed.",
    )
    assert format_transcript(tr).summary == (
        "The dentist appointment was horrible and painful. "
        "I read a book about the dentist appointment and felt wonderful."
    )


def test_summary_of_one_sentence_is_that_sentence() -> None:
    assert format_transcript(transcript("i walked the dog")).summary == "I walked the dog."


def test_summary_is_at_most_three_hundred_characters() -> None:
    sentence = " ".join(["alpha", "beta", "gamma", "delta"] * 25) + "."
    summary = format_transcript(transcript(sentence)).summary
    assert len(summary) <= 300 and summary.endswith("…") and summary.startswith("Alpha beta gamma")
    assert len(summary) > 250  # cut at the last word that fits
    long_text = " ".join(f"This is sentence {i} about gardening and about cooking with friends." for i in range(30))
    assert 0 < len(format_transcript(transcript(long_text)).summary) <= 300


def test_tags_are_spoken_lower_case_keyphrases_without_overlap() -> None:
    tr = transcript(*DENTIST)
    draft = format_transcript(tr)
    assert draft.tags[0] == "dentist appointment"
    assert 1 <= len(draft.tags) <= 5
    for tag in draft.tags:
        assert tag == tag.lower() and 1 <= len(tag.split()) <= 2
        assert not any(f" {tag} " in f" {other} " for other in draft.tags if other != tag), draft.tags
    assert "dentist" not in draft.tags  # contained in "dentist appointment"
    assert "today" not in draft.tags and "evening" not in draft.tags  # generic diary words
    assert_only_spoken_words(tr, draft)


# --- the promise: no invented words ------------------------------------------------------

VOCABULARY = [
    *("today", "yesterday", "I", "i", "went", "walked", "to", "the", "a", "park", "dentist", "coffee", "Sarah"),
    *("garden", "work", "manager", "happy", "sad", "tired", "great", "terrible", "meeting", "dinner", "pasta"),
    *("sister", "phone", "book", "movie", "train", "station", "office", "rain", "sunny", "dog", "that", "had"),
    *("is", "and", "but", "so", "really", "very", "not", "don't", "I'm", "it's", "New", "York", "e.g.", "Dr."),
    *("1,000", "3.5"),
]
FILLERS = ["um", "uh", "erm", "uhm", "hmm", "er", "ah", "Um", "Uh", "Hmm"]
PUNCTUATION = ["", "", "", "", ",", ".", "!", "?", "...", " ,", " .", "-", ";"]


def random_transcript(rng: random.Random) -> Transcript:
    items, start = [], 0.0
    for _ in range(rng.randint(0, 12)):
        tokens = []
        for _ in range(rng.randint(0, 14)):
            word = rng.choice(FILLERS) if rng.random() < 0.15 else rng.choice(VOCABULARY)
            if rng.random() < 0.1:
                tokens.append(word)  # a stutter
            tokens.append(word + rng.choice(PUNCTUATION))
        duration = rng.uniform(0.5, 6)
        items.append((start, start + duration, " ".join(tokens)))
        start += duration + rng.choice([0.0, 0.2, 1.0, 2.0, 4.0])
    return timed(*items)


CORPUS = (
    transcript(*DENTIST),
    transcript("Heute war ich mit meinem Hund im Park. Ähm, das Wetter war schön.", language="de"),
    transcript("Hoy fui al mercado con mi hermana. Compramos frutas y verduras.", language="es"),
    transcript("i i think, um, that that is it", "and then... I- I left!"),
    transcript("um", "uh", "hmm"),
)


def test_never_invents_words() -> None:
    rng = random.Random(20240517)
    samples = [*CORPUS, *(random_transcript(rng) for _ in range(300))]
    non_empty = 0
    for tr in samples:
        draft = format_transcript(tr)
        if draft.paragraphs:
            non_empty += 1
            assert_only_spoken_words(tr, draft)
            assert draft.summary and draft.title != EMPTY_TITLE
        else:  # nothing said: the one allowed unspoken title
            assert draft.title == EMPTY_TITLE and draft.summary == "" and draft.tags == ()
            assert not words(tr.text) - words(" ".join(FILLERS))
    assert non_empty > 250  # the generator mostly produces speech


def test_every_spoken_non_filler_word_stays_in_the_body() -> None:
    rng = random.Random(7)
    fillers = {f.lower() for f in FILLERS}
    for _ in range(100):
        tr = random_transcript(rng)
        assert words(tr.text) - fillers <= words(format_transcript(tr).body)


# --- mood --------------------------------------------------------------------------------


def mood(*texts: str, language: str = "en") -> tuple[str, float]:
    draft = format_transcript(transcript(*texts, language=language))
    return draft.mood_label, draft.mood_score


def test_positive_mood() -> None:
    label, score = mood("I had a wonderful day.", "The weather was great and I feel happy.")
    assert label == "positive" and 0.5 < score <= 1.0


def test_negative_mood() -> None:
    label, score = mood("I'm so tired.", "Work was stressful and my manager yelled at me.")
    assert label == "negative" and -1.0 <= score < -0.5


def test_neutral_mood() -> None:
    assert mood("I went to the store.", "I bought milk and bread.") == ("neutral", 0.0)


def test_mixed_mood_needs_a_clearly_positive_and_a_clearly_negative_sentence() -> None:
    label, score = mood(
        "Today was the best day ever, I love my family so much!",
        "But the news about grandpa was horrible and I am devastated.",
    )
    assert label == "mixed" and -1.0 <= score <= 1.0


def test_mood_score_is_rounded_to_three_places() -> None:
    _label, score = mood("The food was good but the service was slow.")
    assert score == round(score, 3) and score != 0.0


def test_mood_is_not_guessed_for_other_languages() -> None:
    # Would be strongly positive if read as English ("love", "great", "happy").
    assert mood("Love great happy, ich bin so froh.", language="de") == ("neutral", 0.0)
    assert mood("I love this wonderful day.", language="") == ("neutral", 0.0)
    assert mood("I love this wonderful day.", language="en-GB")[0] == "positive"


# --- other languages, empty and large transcripts ----------------------------------------


def test_german_transcript_gets_paragraphs_title_summary_and_neutral_mood() -> None:
    tr = timed(
        (0, 4, "heute war ich mit meinem Hund im Park. Ähm, das Wetter war schön"),
        (4.2, 8, "und wir sind lange spazieren gegangen."),
        (11, 14, "Danach habe ich Kuchen gebacken und der Kuchen war lecker"),
        language="de",
    )
    draft = format_transcript(tr)
    assert draft.paragraphs == (
        "Heute war ich mit meinem Hund im Park. Das Wetter war schön und wir sind lange spazieren gegangen.",
        "Danach habe ich Kuchen gebacken und der Kuchen war lecker.",
    )
    assert draft.title == "Hund im Park"
    assert draft.summary and draft.summary in draft.body.replace("\n\n", " ")
    assert (draft.mood_label, draft.mood_score) == ("neutral", 0.0)
    assert "kuchen" in {w for tag in draft.tags for w in tag.split()}
    assert draft.language == "de"
    assert_only_spoken_words(tr, draft)


def test_spanish_transcript_gets_paragraphs_title_summary_and_neutral_mood() -> None:
    tr = timed(
        (0, 3, "hoy fui al mercado con mi hermana."),
        (3.1, 6, "Compramos frutas y verduras."),
        (9, 12, "Luego cocinamos una paella deliciosa para toda la familia."),
        language="es",
    )
    draft = format_transcript(tr)
    assert draft.paragraphs == (
        "Hoy fui al mercado con mi hermana. Compramos frutas y verduras.",
        "Luego cocinamos una paella deliciosa para toda la familia.",
    )
    assert draft.title and len(draft.title.split()) <= 8
    assert draft.summary and (draft.mood_label, draft.mood_score) == ("neutral", 0.0)
    assert_only_spoken_words(tr, draft)


def test_empty_transcript_gives_a_valid_empty_draft() -> None:
    for tr in (Transcript(language="en", segments=()), transcript("", "   ", "um, uh..."), Transcript("", ())):
        draft = format_transcript(tr)
        assert draft == EntryDraft(
            title=EMPTY_TITLE,
            paragraphs=(),
            summary="",
            mood_label="neutral",
            mood_score=0.0,
            tags=(),
            language=tr.language,
            formatter="rules",
            usage={},
        )
        assert draft.body == ""


def test_large_transcript() -> None:
    rng = random.Random(3)
    vocabulary = sorted({w.lower() for w in VOCABULARY if w.isalpha()})
    texts = [" ".join(rng.sample(vocabulary, 10)) + "." for _ in range(400)]  # no immediate repeats
    tr = transcript(*texts, gap=0.5)
    draft = format_transcript(tr)
    assert len(draft.body.split()) == 4000
    assert all(len(p.split()) <= 120 for p in draft.paragraphs)
    assert 1 <= len(draft.tags) <= 5 and 0 < len(draft.summary) <= 300
    assert draft.title and draft.mood_label in {"positive", "negative", "neutral", "mixed"}
    assert_only_spoken_words(tr, draft)


# --- interface ---------------------------------------------------------------------------


def test_rules_formatter_interface() -> None:
    formatter = RulesFormatter()
    assert formatter.name == "rules" and formatter.paragraph_pause == 2.0
    tr = transcript(*DENTIST, language="en")
    draft = formatter.format(tr)
    assert (draft.formatter, draft.language, draft.usage) == ("rules", "en", {})
    assert draft == format_transcript(tr)
    assert EntryDraft.from_dict(draft.to_dict()) == draft


def test_module_does_not_import_django() -> None:
    code = "import sys, transcription.formatters.rules; assert 'django' not in sys.modules, 'django imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
