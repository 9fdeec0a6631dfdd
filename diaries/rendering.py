"""Entries rendered for people: Markdown for export, the API and the terminal."""

from __future__ import annotations

from diaries.models import DiaryEntry


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def entry_to_markdown(entry: DiaryEntry, *, include_segments: bool = True) -> str:
    lines = [f"# {entry.title}", ""]
    lines.append(
        f"*Recorded {entry.recorded_at:%A %d %B %Y, %H:%M} · mood: {entry.mood_label} ({entry.mood_score:+.2f})*"
    )
    if entry.tags:
        lines.append("")
        lines.append("Tags: " + ", ".join(f"`{tag}`" for tag in entry.tags))
    lines += ["", "## Summary", "", entry.summary or "—", "", "## Entry", ""]
    for paragraph in entry.paragraphs:
        lines += [paragraph, ""]
    if include_segments and entry.segments:
        lines += ["## Transcript", ""]
        for segment in entry.segments:
            lines.append(f"- `{_clock(segment['start'])}–{_clock(segment['end'])}` {segment['text']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
