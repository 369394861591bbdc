"""Image uploads: checked by what they are (not what they are called), stripped of what the camera or the
editing program wrote into them (GPS position, camera, author, comments), stored once by content hash."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps, ImageSequence, JpegImagePlugin, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import InvalidInput
from ..models import Media

MAX_BYTES = 5 * 1024 * 1024
MAX_SIDE = 6000
# Every frame of an animation is decoded and held at once while it is cleaned: this bounds the memory one upload
# can take (about 4 bytes a pixel), e.g. 120 frames of 600 x 400, or one still image of 6000 x 6000.
MAX_FRAME_PIXELS = 36_000_000
TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# Phone cameras write JPEGs with extra pictures appended (MPO: depth maps, previews); the first is the photo.
ALIASES = {"MPO": "JPEG"}
# What survives from the original besides the pixels: how to show them (colour profile, transparency) and how to
# play an animation. Everything else Pillow read (EXIF, XMP, IPTC, comments, PNG text chunks) is left behind.
KEPT_INFO = ("icc_profile", "transparency", "duration", "loop")


def media_dir(var_dir: Path) -> Path:
    return var_dir / "media"


def save_image(session: Session, data: bytes, filename: str, var_dir: Path, uploaded_by_id: int | None = None) -> Media:
    """Store an uploaded image and return its row; InvalidInput (field `image`) when it is not one we take."""
    kind = _kind_of(data)
    try:
        data, width, height = _without_metadata(data, kind)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInput({"image": "That file is not an image we can use: upload a PNG, JPEG, GIF or WebP"}) from None
    # The name is the hash of what is stored and served, so the same picture uploaded twice is stored once.
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


def _kind_of(data: bytes) -> str:
    """The image format of an upload we take (PNG, JPEG, GIF or WEBP); InvalidInput (field `image`) otherwise."""
    if not data:
        raise InvalidInput({"image": "The file is empty: choose an image"})
    if len(data) > MAX_BYTES:
        raise InvalidInput({"image": f"The image must be {MAX_BYTES // (1024 * 1024)} MB or smaller"})
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind, (width, height) = probe.format, probe.size
            frames = getattr(probe, "n_frames", 1)
            probe.verify()  # reads the whole file: a truncated or corrupt image is refused here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInput({"image": "That file is not an image we can use: upload a PNG, JPEG, GIF or WebP"}) from None
    kind = ALIASES.get(kind, kind)
    if kind not in TYPES:
        raise InvalidInput({"image": "Upload a PNG, JPEG, GIF or WebP image"})
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise InvalidInput({"image": f"The image must be at most {MAX_SIDE} pixels on each side"})
    if kind != "JPEG" and frames * width * height > MAX_FRAME_PIXELS:
        most = MAX_FRAME_PIXELS // (width * height)
        raise InvalidInput(
            {"image": f"An animation this size can have at most {most} frames: make it smaller or shorter"}
        )
    return kind


def _without_metadata(data: bytes, kind: str) -> tuple[bytes, int, int]:
    """The image encoded again from its pixels alone, turned the way its EXIF orientation says, as (bytes, width,
    height). Dropping the metadata drops the orientation with it, so it is applied to the pixels first; an
    animation keeps every frame and its timing. Deterministic: the same upload always gives the same bytes."""
    with Image.open(io.BytesIO(data)) as original:
        if kind == "JPEG":
            # One picture, even from a multi-picture file; encoded with the original's quantisation tables and
            # chroma subsampling, so a second encoding loses next to nothing and keeps about the same size.
            options = {"qtables": original.quantization, "subsampling": JpegImagePlugin.get_sampling(original)}
            options["progressive"] = bool(original.info.get("progressive"))
            frames = [_clean_frame(original)]
        else:
            frames = [_clean_frame(frame) for frame in ImageSequence.Iterator(original)]
            options = {"save_all": True, "append_images": frames[1:]} if len(frames) > 1 else {}
            if kind == "WEBP":
                options["lossless"] = _webp_is_lossless(data)
                options["quality"] = 100 if options["lossless"] else 90
            if kind == "PNG" and len(frames) > 1:
                # Pillow gives each frame whole; drawn as it is, over nothing, it shows what the original showed.
                options.update(disposal=0, blend=0)
        out = io.BytesIO()
        frames[0].save(out, kind, **options)
        return out.getvalue(), frames[0].width, frames[0].height


def _clean_frame(frame: Image.Image) -> Image.Image:
    """One frame, loaded and turned upright, with only the information in KEPT_INFO."""
    upright = ImageOps.exif_transpose(frame)
    upright.info = {key: frame.info[key] for key in KEPT_INFO if key in frame.info}
    return upright


def _webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP file's (first) picture is lossless (a VP8L bitstream), so encoding it again stays lossless
    and a lossy one is not blown up to a lossless one. Reads the RIFF chunk list: id, little-endian size, data."""
    offset = 12  # after "RIFF", the file size and "WEBP"
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk in (b"VP8L", b"VP8 "):
            return chunk == b"VP8L"
        if chunk == b"ANMF":  # an animation frame: 16 bytes of frame header, then its own chunks
            return _webp_is_lossless(b"\0" * 12 + data[offset + 24 : offset + 8 + size])
        offset += 8 + size + (size & 1)
    return False
