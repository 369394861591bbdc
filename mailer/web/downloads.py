"""Files a view hands back as downloads."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, stream_with_context


def csv_download(pieces: Iterator[str], filename: str) -> Response:
    """CSV text (from `mailer.spreadsheet`, so BOM-led and formula-safe) streamed as an attachment."""
    return Response(
        stream_with_context(pieces),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
