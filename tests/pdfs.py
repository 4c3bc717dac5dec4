"""A tiny PDF writer for tests: pages of text in Helvetica (a real text layer), or raw content.

Written by hand (catalog, page tree, one content stream per page, cross-reference table) so
tests make the exact PDFs they need, including broken ones, without a PDF library.
"""

from __future__ import annotations

import io
import zlib


def _escape(line: str) -> bytes:
    text = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return text.encode("cp1252", errors="replace")


def text_stream(text: str) -> bytes:
    """A content stream that draws ``text`` line by line."""
    ops = [b"BT /F1 11 Tf 14 TL 72 760 Td"]
    ops += [b"(" + _escape(line) + b") Tj T*" for line in text.split("\n")]
    ops.append(b"ET")
    return b"\n".join(ops)


def pdf(
    pages: list[str] | None = None, *, streams: list[bytes] | None = None, compress: bool = False
) -> bytes:
    """A PDF whose pages show ``pages`` (one string per page) or draw the raw ``streams``."""
    contents = streams if streams is not None else [text_stream(p) for p in pages or []]
    n = len(contents)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, body in enumerate(contents):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            f" /Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        data = zlib.compress(body, 9) if compress else body
        flt = b" /Filter /FlateDecode" if compress else b""
        objects.append(b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), flt, data))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, obj))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def encrypted(data: bytes, password: str = "s3cret") -> bytes:
    """``data`` (a PDF) encrypted with a user password, by pypdf."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()
