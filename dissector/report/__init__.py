"""Reports: from a capture to a readable account of every session.

:func:`run_report` reads captures through the pipeline into a :class:`Report` (pure data,
see :mod:`.model`); renderers turn it into a terminal summary (:func:`render_text`),
Markdown (:func:`render_markdown`), one self-contained HTML file (:func:`render_html`) or
JSON (:func:`render_json`).
"""

from __future__ import annotations

from dissector.report.build import run_report
from dissector.report.collector import ReportCollector
from dissector.report.discovery import CaptureTap
from dissector.report.model import REPORT_SCHEMA_VERSION, Report, to_jsonable
from dissector.report.redact import redact_report
from dissector.report.render_html import render_html
from dissector.report.render_json import render_json
from dissector.report.render_markdown import render_markdown
from dissector.report.render_text import render_text

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "CaptureTap",
    "Report",
    "ReportCollector",
    "redact_report",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "run_report",
    "to_jsonable",
]
