"""Image uploads: checked by what they are (not what they are called), stored once by content hash."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import InvalidInput
from ..models import Media

MAX_BYTES = 5 * 1024 * 1024
MAX_SIDE = 6000
TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


def media_dir(var_dir: Path) -> Path:
    return var_dir / "media"


def save_image(session: Session, data: bytes, filename: str, var_dir: Path, uploaded_by_id: int | None = None) -> Media:
    """Store an uploaded image and return its row; InvalidInput (field `image`) when it is not one we take."""
    if not data:
        raise InvalidInput({"image": "The file is empty: choose an image"})
    if len(data) > MAX_BYTES:
        raise InvalidInput({"image": f"The image must be {MAX_BYTES // (1024 * 1024)} MB or smaller"})
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind, (width, height) = probe.format, probe.size
            probe.verify()  # reads the whole file: a truncated or corrupt image is refused here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInput({"image": "That file is not an image we can use: upload a PNG, JPEG, GIF or WebP"}) from None
    if kind not in TYPES:
        raise InvalidInput({"image": "Upload a PNG, JPEG, GIF or WebP image"})
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise InvalidInput({"image": f"The image must be at most {MAX_SIDE} pixels on each side"})
    digest = hashlib.sha256(data).hexdigest()
    existing = session.scalar(select(Media).where(Media.sha256 == digest))
    if existing is not None:
        return existing
    media = Media(
        sha256=digest,
        filename=os.path.basename(filename or "image")[:255] or "image",
        content_type=TYPES[kind],
        size=len(data),
        width=width,
        height=height,
        uploaded_by_id=uploaded_by_id,
    )
    folder = media_dir(var_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / media.stored_name
    if not target.exists():
        # Written whole then renamed: a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
    session.add(media)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # the same image uploaded at the same moment by someone else
        return session.scalar(select(Media).where(Media.sha256 == digest))
    return media
