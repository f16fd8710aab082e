"""The log extract as a PDF (fpdf2, pure Python): the same table as the HTML page, on A4 in
landscape, with the headings repeated on every page.

The PDF's built-in fonts cover Latin-1 (å, ä, ö, é, ü, …); a character outside it is written
as its closest ASCII letters or a question mark rather than failing the extract.
"""

from __future__ import annotations

import unicodedata

from fpdf import FPDF
from fpdf.fonts import FontFace

from flode.audit.extract import HEADINGS, INTRO, TITLE, Extract, cells, generated_text

_WIDTHS = (38, 70, 62, 62, 45)
_SUBSTITUTES = str.maketrans({"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"'})


def latin1(text: str) -> str:
    text = text.translate(_SUBSTITUTES)
    if all(ord(c) < 256 for c in text):
        return text
    out = []
    for char in text:
        if ord(char) < 256:
            out.append(char)
        else:
            folded = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode()
            out.append(folded or "?")
    return "".join(out)


def pdf_document(found: Extract) -> bytes:
    doc = FPDF(orientation="landscape", unit="mm", format="A4")
    doc.set_title(latin1(f"{TITLE[0]} / {TITLE[1]}: Patient/{found.patient}"))
    doc.set_creator("Flöde")
    doc.set_auto_page_break(auto=True, margin=12)
    doc.add_page()
    doc.set_font("Helvetica", style="B", size=16)
    doc.cell(text=latin1(f"{TITLE[0]} / {TITLE[1]}"), new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", size=10)
    lines = [
        INTRO[0],
        INTRO[1],
        f"Patient: {found.patient}. Åtkomster / Accesses: {len(found.lines)}. "
        f"Skapad / Generated: {generated_text(found)}.",
    ]
    for text in lines:
        doc.multi_cell(0, 5, latin1(text), new_x="LMARGIN", new_y="NEXT")
    doc.ln(3)
    doc.set_font("Helvetica", size=8)
    heading = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))
    with doc.table(
        col_widths=_WIDTHS, headings_style=heading, line_height=4, text_align="LEFT"
    ) as table:
        row = table.row()
        for sv, en in HEADINGS:
            row.cell(latin1(f"{sv} / {en}"))
        for line in found.lines:
            row = table.row()
            for value in cells(line):
                row.cell(latin1(value))
    if not found.lines:
        doc.cell(text="Inga åtkomster / No accesses")
    return bytes(doc.output())
