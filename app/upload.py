"""The ``file`` field of a multipart/form-data upload, read into memory and nowhere else.

Starlette's form parser spools file parts over 1 MB to an unnamed temporary file on disk and refuses a part
header over 4 KB (a client file name of ~4,200 characters); here the body is already bounded by the upload
limit, so the photo stays in memory, and client file names are never used, so their length does not matter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

FIELD = "file"
MAX_PARTS = 16  # one photo plus a few stray form fields; more is not a browser or curl upload
NO_FILE = f"no file: send the image as multipart/form-data field '{FIELD}'"


class UploadError(ValueError):
    """An upload that cannot be used: a body without a usable ``file`` field, or bytes that are no image this
    server decodes (:mod:`app.decode`); ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Parts:
    """Parser callbacks: the bytes of every part named in ``names``, other parts counted and dropped."""

    def __init__(self, names: tuple[str, ...] = (FIELD,)) -> None:
        self.names = {name.encode(): name for name in names}
        self.files: dict[str, list[bytearray]] = {}
        self.count = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._current: bytearray | None = None

    def on_part_begin(self) -> None:
        self.count += 1
        if self.count > MAX_PARTS:
            raise UploadError(400, f"too many form fields (over {MAX_PARTS}): send only field '{FIELD}'")
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._current = None
        name = self.names.get(options.get(b"name", b""))
        if name is not None:
            self._current = bytearray()
            self.files.setdefault(name, []).append(self._current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current += data[start:end]


async def read_file_field(content_type: str, chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The bytes of multipart field ``file`` from the body ``chunks`` (already bounded to ``max_bytes``).

    Raises :class:`UploadError`: 400 for a body that is not multipart/form-data, is malformed or has no
    ``file`` field; 422 when ``file`` is sent more than once (which one was meant is not ours to guess).
    """
    return (await read_file_fields(content_type, chunks, max_bytes))[FIELD]


async def read_file_fields(
    content_type: str,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    optional: tuple[str, ...] = (),
    required: str | None = FIELD,
) -> dict[str, bytes]:
    """The bytes of field ``required`` (``file``; None: no field is required) and of those ``optional`` fields
    that were sent, by name; errors as :func:`read_file_field`'s (an optional field sent twice is 422 too)."""
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise UploadError(400, NO_FILE)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "malformed multipart body: the Content-Type has no boundary")
    parts = _Parts((*((required,) if required else ()), *optional))
    callbacks = {
        name: getattr(parts, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
        )
    }
    try:
        # A part header may be as long as the body allows: the client's file name is never read.
        # python-multipart types the callbacks as a TypedDict; this dict holds its keys, built by name.
        parser = MultipartParser(boundary, callbacks, max_header_size=max_bytes)  # type: ignore[arg-type]
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
        if parser.state is not MultipartState.END:
            raise UploadError(400, "malformed multipart body: it ends before its closing boundary")
    except (MultipartParseError, ValueError) as exc:
        if isinstance(exc, UploadError):
            raise
        raise UploadError(400, f"malformed multipart body: {exc}") from None
    for name, sent in parts.files.items():
        if len(sent) > 1:
            raise UploadError(422, f"field '{name}' was sent {len(sent)} times: send one image per request")
    if required == FIELD and FIELD not in parts.files:
        raise UploadError(400, NO_FILE)
    if required is not None and required not in parts.files:
        raise UploadError(400, f"no field '{required}': send it as multipart/form-data")
    return {name: bytes(sent[0]) for name, sent in parts.files.items()}
