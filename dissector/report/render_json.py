"""The JSON report: the model as data (``report_schema_version`` 1, see
:mod:`dissector.report.model` for every field).

Strings are kept as the model holds them (device strings exact up to the model's length
limit); lone surrogates, which are not valid in UTF-8 output, are written as ``\\xNN``;
control characters are JSON escapes, never raw.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dissector.report.model import Report, to_jsonable

_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:
                raw = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
            return raw.decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def report_data(report: Report) -> dict[str, Any]:
    """The JSON document as Python data."""
    data = to_jsonable(report)
    assert isinstance(data, dict)
    return dict(_clean(data))


def render_json(report: Report) -> str:
    """The report as one JSON document (pretty-printed, UTF-8 text). DEL, C1 controls and
    the Unicode line separators are written as ``\\uXXXX`` escapes (the same data, but safe
    to ``cat`` on a terminal and to split on lines)."""
    text = json.dumps(report_data(report), ensure_ascii=False, indent=1, allow_nan=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
