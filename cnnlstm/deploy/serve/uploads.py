"""Receive an untrusted video upload safely: the HTTP-independent half of ``cnnlstm serve``.

- Bytes are counted as the body arrives; the limit stops the upload at the first chunk past it,
  whatever ``Content-Length`` says (or when it is absent: chunked uploads).
- ``multipart/form-data`` is parsed incrementally (python-multipart's streaming parser), and the
  ``file`` part goes straight to a server-made temp name; the client's filename is only shown back.
- Only known container formats pass: by extension, by their first bytes (checked here, in pure
  Python) and by FFmpeg's probe (``probe_upload``, which the app runs in an isolated worker).

Imports only the standard library at import time; python-multipart and the decoder load lazily.
"""
from __future__ import annotations

import os
import tempfile
import unicodedata
from dataclasses import dataclass, field
from typing import AsyncIterator

# extension -> container family; a family's FFmpeg demuxer names are in ALLOWED_DEMUXERS
ALLOWED_EXTENSIONS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4",
    ".mkv": "matroska", ".webm": "matroska",
    ".avi": "avi",
    ".mpg": "mpeg", ".mpeg": "mpeg", ".ts": "mpegts", ".m2ts": "mpegts",
}
# FFmpeg's demuxer names (``container.format.name`` is a comma list, e.g. "mov,mp4,m4a,3gp,3g2,mj2")
ALLOWED_DEMUXERS = frozenset({"mov", "mp4", "matroska", "webm", "avi", "mpeg", "mpegts"})
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
SNIFF_BYTES = 1024


class UploadError(Exception):
    """A rejected request: HTTP ``status``, a short machine-readable ``error`` and a human ``detail``."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


@dataclass
class Upload:
    """A received file: ``path`` is server-made; ``filename`` is the client's (display only)."""

    path: str
    filename: str
    size: int  # bytes of the file part
    head: bytes = field(default=b"", repr=False)  # its first SNIFF_BYTES bytes


def allowed_extension(filename: str) -> str:
    """The lower-case extension of ``filename`` if its container is allowed, else UploadError(415)."""
    ext = os.path.splitext(filename)[1].lower()
    if ext not in ALLOWED_EXTENSIONS:
        raise UploadError(415, "unsupported_format",
                          f"{filename!r}: {ext or 'no extension'} is not an allowed video container; "
                          f"upload one of {', '.join(sorted(ALLOWED_EXTENSIONS))}")
    return ext


def sniff_container(head: bytes) -> str | None:
    """The allowed container family that ``head`` (a file's first bytes) starts like, or None."""
    if head[4:8] in _MP4_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    for packet in (188, 192):  # MPEG-TS (M2TS has a 4-byte prefix: sync byte at offset 4)
        offset = 4 if packet == 192 else 0
        if len(head) > offset + 2 * packet and all(head[offset + i * packet] == 0x47 for i in range(3)):
            return "mpegts"
    return None


def display_name(raw: str) -> str:
    """The client's filename reduced to something safe to show: basename, no control characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:200] or "upload"


class _FormWriter:
    """python-multipart callbacks: stream the ``file`` part into a server-made temp file."""

    def __init__(self, directory: str, field_name: str):
        self.directory, self.field_name = directory, field_name
        self.header_name, self.header_value = bytearray(), bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.file = None  # the open temp file while its part streams in
        self.upload: Upload | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_name).lower()] = bytes(self.header_value)
        self.header_name.clear(), self.header_value.clear()

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        kind, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if kind != b"form-data" or params.get(b"name") != self.field_name.encode() or b"filename" not in params:
            return  # another form field: its bytes are counted, not stored
        if self.upload is not None:
            raise UploadError(400, "bad_request", f"send one file per request; got a second {self.field_name!r} part")
        filename = display_name(params[b"filename"].decode("utf-8", "replace"))
        ext = allowed_extension(filename)  # 415 before the body is read
        fd, path = tempfile.mkstemp(prefix="upload-", suffix=ext, dir=self.directory)
        self.file = os.fdopen(fd, "wb")
        self.upload = Upload(path, filename, 0)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.file is None:
            return
        chunk = data[start:end]
        if len(self.upload.head) < SNIFF_BYTES:
            self.upload.head += chunk[: SNIFF_BYTES - len(self.upload.head)]
        self.file.write(chunk)
        self.upload.size += len(chunk)

    def on_part_end(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def discard(self) -> None:
        """Close and delete the temp file (on any failure)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.upload is not None:
            remove_quietly(self.upload.path)


async def receive_upload(chunks: AsyncIterator[bytes], content_type: str, content_length: str | None, *,
                         directory: str, max_bytes: int, field_name: str = "file") -> Upload:
    """Read a ``multipart/form-data`` body chunk by chunk and store its ``field_name`` file part.

    Raises :class:`UploadError`: 413 as soon as more than ``max_bytes`` body bytes arrived (or
    ``Content-Length`` announces more), 415 for a disallowed extension (as soon as the part's
    headers arrive) or content, 400 for a malformed body, no file part or an empty file. The temp
    file is deleted on every error; on success the caller owns (and must delete) ``Upload.path``.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(400, "bad_request",
                          f"send the video as multipart/form-data with a {field_name!r} file field; "
                          f"got Content-Type {content_type!r}")
    too_big = UploadError(413, "too_large", f"the upload is over the limit of {max_bytes / 2**20:g} MiB")
    if content_length is not None:
        if not content_length.isdigit():
            raise UploadError(400, "bad_request", f"Content-Length must be a number of bytes; got {content_length!r}")
        if int(content_length) > max_bytes:
            raise too_big
    writer = _FormWriter(directory, field_name)
    parser = MultipartParser(params[b"boundary"], writer.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise too_big
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:
            raise UploadError(400, "bad_request", "the multipart body ended early (no closing boundary)")
        upload = writer.upload
        if upload is None:
            raise UploadError(400, "no_file", "no file in the request: send the video in a form field named "
                              f"{field_name!r}")
        if upload.size == 0:
            raise UploadError(400, "empty_file", f"{upload.filename!r} is empty (0 bytes)")
        if sniff_container(upload.head) is None:
            raise UploadError(415, "unsupported_format",
                              f"{upload.filename!r} does not start like a video container "
                              f"(MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS); first bytes {upload.head[:8]!r}")
        return upload
    except FormParserError as exc:
        writer.discard()
        raise UploadError(400, "bad_request", f"malformed multipart body: {exc}") from None
    except BaseException:  # UploadError, a client disconnect, cancellation: never leave the file behind
        writer.discard()
        raise


def probe_upload(path: str, limits) -> dict:
    """FFmpeg's view of an upload (demuxer, size, duration), with ``limits`` enforced.

    Module-level so an :class:`~cnnlstm.data.video.pool.IsolatedPool` worker runs it: FFmpeg parses the
    untrusted file there, where a crash or hang costs this upload only.
    """
    from ...data.video.decode import probe

    info = probe(path, limits=limits)
    return {"container": info.container, "codec": info.codec, "width": info.width, "height": info.height,
            "duration": info.duration, "frames": info.num_frames}


def demuxer_allowed(container: str) -> bool:
    """True when FFmpeg's demuxer name (a comma list) is one of ``ALLOWED_DEMUXERS``."""
    return any(name.strip() in ALLOWED_DEMUXERS for name in container.split(","))


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["ALLOWED_EXTENSIONS", "ALLOWED_DEMUXERS", "UploadError", "Upload", "allowed_extension", "sniff_container",
           "display_name", "receive_upload", "probe_upload", "demuxer_allowed", "remove_quietly"]
