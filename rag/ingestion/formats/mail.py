"""E-mail (.eml, .msg): subject, sender, recipients, date and body; its attachments come back as files of
their own, which the loader reads with whatever format they are and links to the mail by source."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from rag.ingestion.formats.base import Format, Loaded, Skip
from rag.ingestion.formats.html import html_text

MAX_ATTACHMENTS = 20  # per mail: a mail carrying hundreds of files is an archive; the rest are reported


class Eml(Format):
    name = "EML"
    extensions = (".eml",)
    no_text = "no subject and no text body"

    def load(self, path: Path) -> Loaded:
        with path.open("rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        if not isinstance(message, EmailMessage) or not (message.keys() or message.get_payload()):
            raise Skip("not an e-mail message (no headers)", "corrupt")
        part = message.get_body(preferencelist=("plain", "html"))
        body = ""
        if part is not None:
            content = part.get_content()
            body = html_text(content) if part.get_content_subtype() == "html" else content
        attachments = []
        for attachment in message.iter_attachments():
            name = attachment.get_filename() or ""
            data = attachment.get_payload(decode=True)
            if name and isinstance(data, bytes):
                attachments.append((name, data))
        headers = {h: str(message.get(h, "")) for h in ("Subject", "From", "To", "Cc", "Date")}
        return mail(headers, body, attachments)


class Msg(Format):
    """Outlook's .msg (an OLE compound file); known by extension, since .doc and .xls share its signature."""

    name = "MSG"
    extensions = (".msg",)
    no_text = "no subject and no text body"

    def load(self, path: Path) -> Loaded:
        import extract_msg

        try:
            message = extract_msg.openMsg(str(path))
        except Exception as exc:  # extract-msg raises its own types, and OSError for a non-OLE file
            raise Skip(f"not a valid Outlook .msg file ({' '.join(str(exc).split())[:120]})", "corrupt") from None
        try:
            headers = {
                "Subject": message.subject or "",
                "From": message.sender or "",
                "To": message.to or "",
                "Cc": message.cc or "",
                "Date": str(message.date or ""),
            }
            body = message.body or ""
            if not body.strip() and message.htmlBody:
                body = html_text(message.htmlBody.decode("utf-8", errors="replace"))
            attachments = []
            for attachment in getattr(message, "attachments", []):
                name = getattr(attachment, "longFilename", None) or getattr(attachment, "shortFilename", None)
                data = getattr(attachment, "data", None)
                if name and isinstance(data, bytes):
                    attachments.append((name, data))
        finally:
            message.close()
        return mail(headers, body, attachments)


def mail(headers: dict[str, str], body: str, attachments: list[tuple[str, bytes]]) -> Loaded:
    """The headers a reader asks about ("who sent it, when") as lines above the body; the subject is the title."""
    lines = [f"{name}: {' '.join(value.split())}" for name, value in headers.items() if value.strip()]
    if attachments:
        lines.append("Attachments: " + ", ".join(name for name, _ in attachments))
    text = "\n".join(lines) + ("\n\n" + body.strip() if body.strip() else "")
    if not body.strip() and not headers.get("Subject", "").strip():
        text = ""
    return Loaded(text, headers.get("Subject") or None, attachments=tuple(attachments))
