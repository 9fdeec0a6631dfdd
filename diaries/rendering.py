"""Entries rendered for people: Markdown and PDF for export, the API and the terminal; SVG charts for reviewers.

Pure functions of their arguments: no database, no request.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from django.utils import timezone
from django.utils.html import escape

from diaries.models import DiaryEntry


def _local(moment: datetime) -> datetime:
    """In the site's TIME_ZONE (aware datetimes only; naive ones are shown as they are)."""
    return timezone.localtime(moment) if timezone.is_aware(moment) else moment


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def entry_to_markdown(entry: DiaryEntry, *, include_segments: bool = True) -> str:
    lines = [f"# {entry.title}", ""]
    lines.append(
        f"*Recorded {_local(entry.recorded_at):%A %d %B %Y, %H:%M} · mood: {entry.mood_label} "
        f"({entry.mood_score:+.2f})*"
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


def entries_to_markdown(entries: Iterable[DiaryEntry], *, title: str, subtitle: str = "") -> str:
    """Several entries as one Markdown document (a client's date range), in the order given."""
    parts = [f"# {title}", ""]
    if subtitle:
        parts += [f"*{subtitle}*", ""]
    # Each entry's own headings move one level down, under the document's title.
    body = [
        "\n".join("#" + line if line.startswith("#") else line for line in entry_to_markdown(entry).splitlines()) + "\n"
        for entry in entries
    ]
    if not body:
        parts.append("No entries in this period.")
    return "\n".join(parts) + "\n" + "\n---\n\n".join(body)


# --- PDF (reportlab) ---------------------------------------------------------------------------

# A Unicode TrueType font makes any language print; Debian's fonts-dejavu-core ships DejaVu Sans,
# and reportlab's own Bitstream Vera (Latin only) is the fallback that is always there.
_FONT_CANDIDATES = [
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("Vera.ttf", "VeraBd.ttf"),
]
_fonts: tuple[str, str] | None = None


def _pdf_fonts() -> tuple[str, str]:
    global _fonts
    if _fonts is None:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFError, TTFont

        _fonts = ("Helvetica", "Helvetica-Bold")
        for regular, bold in _FONT_CANDIDATES:
            try:
                pdfmetrics.registerFont(TTFont("DiaryRegular", regular))
                pdfmetrics.registerFont(TTFont("DiaryBold", bold))
            except (TTFError, OSError):
                continue
            _fonts = ("DiaryRegular", "DiaryBold")
            break
    return _fonts


def entries_to_pdf(entries: Iterable[DiaryEntry], *, title: str, subtitle: str = "") -> bytes:
    """Entries as a paginated A4 PDF: title, date and mood, tags, summary, the text and the timed transcript."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import CondPageBreak, Paragraph, SimpleDocTemplate, Spacer

    regular, bold = _pdf_fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=10.5, leading=14.5, spaceAfter=5)
    styles = {
        "title": ParagraphStyle("title", base, fontName=bold, fontSize=18, leading=22, spaceAfter=4),
        "subtitle": ParagraphStyle("subtitle", base, textColor=colors.HexColor("#555555"), spaceAfter=12),
        "h2": ParagraphStyle("h2", base, fontName=bold, fontSize=14, leading=18, spaceBefore=10, spaceAfter=3),
        "meta": ParagraphStyle("meta", base, fontSize=9, textColor=colors.HexColor("#555555")),
        "h3": ParagraphStyle("h3", base, fontName=bold, fontSize=10.5, spaceBefore=6, spaceAfter=2),
        "body": base,
        "segment": ParagraphStyle("segment", base, fontSize=8.5, leading=11, spaceAfter=1, leftIndent=8),
    }

    def para(text: str, style: str) -> Paragraph:
        return Paragraph(xml_escape(text), styles[style])

    story = [para(title, "title")]
    if subtitle:
        story.append(para(subtitle, "subtitle"))
    count = 0
    for entry in entries:
        count += 1
        story += [
            CondPageBreak(40 * mm),
            para(entry.title, "h2"),
            para(
                f"Recorded {_local(entry.recorded_at):%A %d %B %Y, %H:%M} · mood: {entry.mood_label} "
                f"({entry.mood_score:+.2f})" + (" · tags: " + ", ".join(entry.tags) if entry.tags else ""),
                "meta",
            ),
        ]
        if entry.summary:
            story += [para("Summary", "h3"), para(entry.summary, "body")]
        story.append(para("Entry", "h3"))
        story += [para(paragraph, "body") for paragraph in entry.paragraphs]
        if entry.segments:
            story.append(para("Transcript", "h3"))
            story += [
                para(f"{_clock(segment['start'])}–{_clock(segment['end'])}  {segment['text']}", "segment")
                for segment in entry.segments
            ]
        story.append(Spacer(1, 4 * mm))
    if not count:
        story.append(para("No entries in this period.", "body"))

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=title,
        subject=subtitle,
        author="Audio Diary",
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
    )

    def footer(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(regular, 8)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(20 * mm, 10 * mm, title[:90])
        canvas.drawRightString(A4[0] - 20 * mm, 10 * mm, f"page {document.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


# --- Charts (server-rendered SVG) --------------------------------------------------------------

MOOD_COLOURS = {"positive": "#2e7d32", "neutral": "#757575", "negative": "#c62828", "mixed": "#ef6c00"}


def mood_chart_svg(points: Sequence[Any], *, width: int = 720, height: int = 240) -> str:
    """Mood score (-1…1) over time as a line with one dot per entry; `points` have recorded_at, score, label, title."""
    left, right, top, bottom = 44, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="mood-chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        "<title>Mood over time</title>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ddd"/>',
    ]

    def y_of(score: float) -> float:
        return top + (1 - (max(-1.0, min(1.0, score)) + 1) / 2) * plot_h

    for score, label in ((1, "+1"), (0.5, ""), (0, "0"), (-0.5, ""), (-1, "−1")):
        y = y_of(score)
        stroke = "#999" if score == 0 else "#e5e5e5"
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{stroke}"/>')
        if label:
            parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{label}</text>')
    if not points:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#777">No entries</text>'
        )
        parts.append("</svg>")
        return "".join(parts)

    first, last = points[0].recorded_at, points[-1].recorded_at
    span = max((last - first).total_seconds(), 1.0)

    def x_of(when) -> float:
        if len(points) == 1:
            return left + plot_w / 2
        return left + (when - first).total_seconds() / span * plot_w

    coords = [(x_of(p.recorded_at), y_of(p.score)) for p in points]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#417690" stroke-width="1.5"/>')
    for (x, y), point in zip(coords, points, strict=True):
        colour = MOOD_COLOURS.get(point.label, "#417690")
        tip = escape(f"{_local(point.recorded_at):%d %b %Y}: {point.title} ({point.label}, {point.score:+.2f})")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>{tip}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 10}" fill="#555">{_local(first):%d %b %Y}</text>')
    if len(points) > 1:
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 10}" text-anchor="end" fill="#555">{_local(last):%d %b %Y}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def weekly_counts_svg(weeks: Sequence[tuple[date, int]], *, width: int = 720, height: int = 180) -> str:
    """Entries per week as bars, labelled with the week's Monday."""
    left, right, top, bottom = 32, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="weekly-chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        "<title>Entries per week</title>",
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#999"/>',
    ]
    if not weeks:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#777">No entries</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    peak = max(count for _, count in weeks) or 1
    slot = plot_w / len(weeks)
    bar = max(1.0, min(slot * 0.7, 48.0))
    parts.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" fill="#555">{peak}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" fill="#555">0</text>')
    label_every = max(1, len(weeks) // 8)
    for index, (week, count) in enumerate(weeks):
        h = count / peak * plot_h
        x = left + index * slot + (slot - bar) / 2
        tip = escape(f"week of {week:%d %b %Y}: {count} entr{'y' if count == 1 else 'ies'}")
        parts.append(
            f'<rect class="week" data-count="{count}" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" fill="#79aec8"><title>{tip}</title></rect>'
        )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 10}" text-anchor="middle" fill="#555">{week:%d %b}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
