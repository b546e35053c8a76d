"""The audit report as PDF: the same HTML page printed by headless chromium (its print
stylesheet applies), so the PDF and the page can never tell different figures.

I/O only: a temporary HTML file in, a PDF file out, one chromium process with a time
limit (`Settings.pdf_render_timeout_seconds`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from passnum.core.settings import Settings

# Headless, no sandbox (containers run it as root), no GPU, and nothing that reaches the
# network or updates itself while printing a local file.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-pdf-header-footer")


class PdfError(RuntimeError):
    """Printing failed: no chromium, a time-out, or no PDF written."""


def print_html_to_pdf(html: str, pdf_path: Path, settings: Settings) -> None:
    pdf_path = pdf_path.resolve()
    # An earlier print is removed first: a failed print must not leave it to be taken for
    # this one.
    pdf_path.unlink(missing_ok=True)
    binary = shutil.which(settings.chromium_binary)
    if binary is None:
        raise PdfError(f"no chromium at {settings.chromium_binary} (PASSNUM_CHROMIUM_BINARY)")
    with tempfile.TemporaryDirectory(prefix="passnum-pdf-") as directory:
        page = Path(directory) / "report.html"
        page.write_text(html, encoding="utf-8")
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={directory}/profile",
                   f"--print-to-pdf={pdf_path}", page.as_uri()]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=settings.pdf_render_timeout_seconds)
        except subprocess.TimeoutExpired as error:
            raise PdfError(f"chromium took more than {settings.pdf_render_timeout_seconds} s"
                           ) from error
    if result.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        raise PdfError(f"chromium exited {result.returncode}: {result.stderr.strip()[-300:]}")
