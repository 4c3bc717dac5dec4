"""Reading uploaded files: Markdown, plain text, HTML and PDF to text per page, or a clear refusal.

Everything here runs before anything of a file is stored, so a refusal leaves nothing behind.
The kind comes from the file name's suffix and must agree with the bytes (a PDF starts with
``%PDF-``; text and HTML are UTF-8 without NUL bytes). PDFs are read with pypdf, page by page;
what their compressed streams expand to is counted first (a decompression bomb is refused
before any text is extracted), an encrypted PDF that needs a password is refused, and one with
no text at all is said to have no text layer (a scan; there is no OCR). HTML is read with the
standard library's parser, skipping scripts and styles, and refused past a nesting depth.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from core.errors import KeelError
from core.settings import DocumentSettings

KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
MEDIA_TYPES = {
    "markdown": "text/markdown; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
_BINARY_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh", b"\xfd7zXZ")


class DocumentRejected(KeelError):
    """The file cannot be added as a document; ``detail`` says why in the user's terms."""

    code = "document_rejected"
    status = 422
    title = "Document rejected"


class UnsupportedType(DocumentRejected):
    """Not Markdown, text, HTML or PDF (by name, or the bytes disagree with the name)."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported document type"


class BadFilename(DocumentRejected):
    """The file name is empty, too long, has control characters or path parts."""

    code = "bad_filename"
    title = "Bad file name"


class TooLarge(DocumentRejected):
    """The file, or what it expands to, is over a configured limit."""

    code = "document_too_large"
    status = 413
    title = "Document too large"


class CorruptPdf(DocumentRejected):
    """pypdf cannot read the file as a PDF."""

    code = "corrupt_pdf"
    title = "Corrupt PDF"


class EncryptedPdf(DocumentRejected):
    """The PDF needs a password to be read."""

    code = "encrypted_pdf"
    title = "Encrypted PDF"


class NoTextLayer(DocumentRejected):
    """The PDF has pages but no text on any of them (a scan); Keel does not OCR."""

    code = "no_text_layer"
    title = "PDF without text"


class TooDeep(DocumentRejected):
    """The HTML nests elements deeper than the configured limit."""

    code = "html_too_deep"
    title = "HTML nested too deeply"


@dataclass(frozen=True)
class Parsed:
    """A readable file: its kind, its text per page (one page unless a PDF) and page count."""

    kind: str
    pages: list[str]
    page_count: int | None


def check_filename(name: str) -> str:
    """``name`` if it is a bare file name; else ``BadFilename``."""
    if not name or not name.strip():
        raise BadFilename("the upload has no file name")
    if len(name) > 255:
        raise BadFilename("file names are limited to 255 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadFilename("the file name contains control characters")
    if "/" in name or "\\" in name or name in (".", "..") or re.match(r"^[A-Za-z]:", name):
        raise BadFilename(f"the file name {name!r} has path parts; send the bare name")
    return name


def kind_of(name: str) -> str:
    """The document kind the file name's suffix names, or ``UnsupportedType``."""
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix not in KINDS:
        raise UnsupportedType(
            f"{suffix or 'a file without a suffix'} is not supported;"
            " upload Markdown (.md), text (.txt), HTML (.html) or PDF (.pdf)"
        )
    return KINDS[suffix]


def parse(name: str, data: bytes, limits: DocumentSettings) -> Parsed:
    """Read ``data`` (the file called ``name``) into text per page, or refuse it."""
    check_filename(name)
    kind = kind_of(name)
    if len(data) > limits.max_file_bytes:
        raise TooLarge(f"the file is over the limit of {limits.max_file_bytes} bytes")
    if kind == "pdf":
        return _pdf(data, limits)
    text = _text(data, kind)
    if kind == "html":
        text = html_text(text, limits.max_html_depth)
    if len(text) > limits.max_text_chars:
        raise TooLarge(f"the text is over the limit of {limits.max_text_chars} characters")
    if not text.strip():
        raise DocumentRejected("the file has no text")
    return Parsed(kind, [text], None)


def _text(data: bytes, kind: str) -> str:
    if data.startswith(_BINARY_MAGIC) or data.lstrip().startswith(b"%PDF-"):
        raise UnsupportedType(f"the bytes are an archive or a PDF, not {kind}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedType(f"a {kind} file must be UTF-8 text") from None
    if "\x00" in text:
        raise UnsupportedType(f"a {kind} file must not contain NUL bytes")
    return text


_SKIP = {"script", "style", "template", "noscript", "head"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
}  # fmt: skip
_BLOCK = {
    "p", "div", "section", "article", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3",
    "h4", "h5", "h6", "br", "blockquote", "pre", "header", "footer", "dd", "dt", "title",
}  # fmt: skip


class _HtmlText(HTMLParser):
    """Visible text of an HTML document, blocks separated by blank lines; depth is tracked."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(convert_charrefs=True)
        self.max_depth = max_depth
        self.stack: list[str] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.parts.append("\n\n")
        if tag in _VOID:
            return
        self.stack.append(tag)
        if len(self.stack) > self.max_depth:
            raise TooDeep(f"the HTML nests elements deeper than {self.max_depth} levels")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass
        if tag in _BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not any(t in _SKIP for t in self.stack):
            self.parts.append(data)


def html_text(markup: str, max_depth: int) -> str:
    """The visible text of ``markup``, paragraphs separated by blank lines."""
    reader = _HtmlText(max_depth)
    reader.feed(markup)
    reader.close()
    text = "".join(reader.parts)
    paras = (re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paras if p)


def _pdf(data: bytes, limits: DocumentSettings) -> Parsed:
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PyPdfError

    if not data[:1024].lstrip().startswith(b"%PDF-"):
        raise CorruptPdf("the file is not a PDF (it does not start with %PDF-)")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedPdf("the PDF is encrypted with a password; upload it unlocked")
        if len(reader.pages) > limits.max_pages:
            raise TooLarge(f"the PDF has more than {limits.max_pages} pages")
        _check_expansion(reader, limits.max_expanded_bytes)
        pages = _page_texts(reader, limits.max_text_chars)
    except DocumentRejected:
        raise
    except (FileNotDecryptedError, DependencyError):
        raise EncryptedPdf("the PDF is encrypted and cannot be read; upload it unlocked") from None
    except LimitReachedError:
        raise TooLarge("the PDF expands past pypdf's safety limits (a zip bomb?)") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise CorruptPdf("the PDF is damaged and cannot be read") from None
    if not any(p.strip() for p in pages):
        raise NoTextLayer(
            "the PDF has no text layer (scanned pages?); Keel does not OCR: upload a PDF with text"
        )
    return Parsed("pdf", pages, len(pages))


def _check_expansion(reader: object, limit: int) -> None:
    """Refuse a PDF whose page content streams expand past ``limit`` bytes in all."""
    total = 0
    for page in reader.pages:  # type: ignore[attr-defined]
        contents = page.get_contents()
        total += len(contents.get_data()) if contents is not None else 0
        if total > limit:
            raise TooLarge(f"the PDF's pages expand to more than {limit} bytes (a zip bomb?)")


def _page_texts(reader: object, max_chars: int) -> list[str]:
    pages: list[str] = []
    total = 0
    for page in reader.pages:  # type: ignore[attr-defined]
        text = page.extract_text() or ""
        total += len(text)
        if total > max_chars:
            raise TooLarge(f"the text is over the limit of {max_chars} characters")
        pages.append(text.replace("\x00", ""))
    return pages


def chunks(text: str, size: int) -> list[str]:
    """Chunks of at most about ``size`` characters, split at paragraphs, then lines, then words."""
    out: list[str] = []
    cur = ""
    for piece in _pieces(text, size):
        if cur and len(cur) + len(piece) + 1 > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{piece}" if cur else piece
    if cur:
        out.append(cur)
    return out


def _pieces(text: str, size: int) -> list[str]:
    """Paragraphs no longer than ``size``: longer ones split at lines, sentences, then words."""
    out: list[str] = []
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if len(para) <= size:
            out.append(para)
            continue
        words = re.split(r"(?<=[.!?])\s+|\n", para)
        cur = ""
        for w in (x for s in words for x in _hard_split(s.strip(), size)):
            if cur and len(cur) + len(w) + 1 > size:
                out.append(cur)
                cur = ""
            cur = f"{cur} {w}" if cur else w
        if cur:
            out.append(cur)
    return out


def _hard_split(sentence: str, size: int) -> list[str]:
    if len(sentence) <= size:
        return [sentence] if sentence else []
    words = sentence.split()
    return [w[i : i + size] for w in words for i in range(0, len(w), size)]
