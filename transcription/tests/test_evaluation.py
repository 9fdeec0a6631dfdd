import pytest

from transcription.evaluation import word_error_rate


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("I went for a walk.", "i went for a walk", 0.0),  # case and punctuation do not count
        ("I went for a walk", "I went for walk", 0.2),  # one deletion in five words
        ("I went for a walk", "I went for a long walk", 0.2),  # one insertion
        ("I went for a walk", "You went for a run", 0.4),  # two substitutions
        ("I went", "", 1.0),
        ("", "anything", 1.0),  # nothing to say: every word is an insertion, over a length of one
    ],
)
def test_word_error_rate(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)
