"""CSV files that Excel opens as they are, in a Russian locale too (the call log, the report):

- UTF-8 with a byte-order mark: without it Excel reads the file in the ANSI code page
  (cp1251) and the Cyrillic turns to mojibake;
- `;` between cells: the list separator of the locales that write a decimal comma (Russian
  among them), which Excel splits a double-clicked CSV file on;
- numbers whole (seconds, percents), so no decimal separator is ever needed: "12.5" would be
  the 12th of May to a Russian Excel;
- text a spreadsheet would run as a formula (a number "+7 916…", a name "=…") kept as text.
"""

import csv
import io

BOM = "\ufeff"


def new_file():
    """A file with its byte-order mark written, and a writer of its rows."""
    out = io.StringIO()
    out.write(BOM)
    return out, csv.writer(out, delimiter=";")


def text_cell(text: str) -> str:
    """Text a spreadsheet would run as a formula (=, +, -, @) is quoted to stay text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def whole_cell(number) -> str | int:
    """A number rounded to a whole one; empty for None."""
    return "" if number is None else round(number)
