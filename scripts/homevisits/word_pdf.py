"""PDF from a filled Word form, through LibreOffice headless (``soffice --convert-to pdf``).

One conversion at a time, each with its own LibreOffice profile in a temporary folder (so it never
meets a desktop session's profile or a stale lock), a timeout, and its exit code and PDF checked.
Without LibreOffice the caller says so in one sentence and keeps the .docx.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from .errors import HomevisitsError

TIMEOUT = 120.0  # seconds for one conversion; the first start of a fresh profile takes a few
NO_LIBREOFFICE = (
    "LibreOffice is not installed, so the Word forms are .docx only (no PDF): "
    "install libreoffice-writer (or put soffice on PATH) to get their PDFs."
)
_ONE_AT_A_TIME = threading.Lock()


class WordPdfError(HomevisitsError):
    """LibreOffice could not make the PDF: the sentence says what it did."""

    exit_code = 1


def soffice() -> str | None:
    """The LibreOffice program, or None when it is not installed (``$HOMEVISITS_SOFFICE`` wins)."""
    named = os.environ.get("HOMEVISITS_SOFFICE")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return shutil.which("soffice") or shutil.which("libreoffice")


def available() -> bool:
    return soffice() is not None


def docx_to_pdf(docx: Path, pdf: Path, *, timeout: float = TIMEOUT) -> Path:
    """Convert ``docx`` to ``pdf`` with LibreOffice; raise WordPdfError (one sentence) when it fails."""
    program = soffice()
    if program is None:
        raise WordPdfError(NO_LIBREOFFICE)
    docx, pdf = Path(docx).resolve(), Path(pdf)
    with _ONE_AT_A_TIME, tempfile.TemporaryDirectory(prefix="homevisits-soffice-") as work:
        work_dir = Path(work)
        outdir = work_dir / "out"
        outdir.mkdir()
        command = [
            program,
            f"-env:UserInstallation={(work_dir / 'profile').as_uri()}",
            "--headless",
            "--invisible",
            "--nologo",
            "--nodefault",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            "pdf:writer_pdf_Export",
            "--outdir",
            str(outdir),
            str(docx),
        ]
        env = {**os.environ, "HOME": str(work_dir), "SAL_USE_VCLPLUGIN": "svp"}
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work_dir,
            start_new_session=True,  # so a timeout can end LibreOffice and every process it started
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end(process)
            raise WordPdfError(
                f"LibreOffice took more than {timeout:g} seconds to make the PDF of {docx.name} and was stopped."
            ) from None
        made = outdir / f"{docx.stem}.pdf"
        said = " ".join(output.decode("utf-8", "replace").split())[-200:]
        if process.returncode != 0:
            raise WordPdfError(
                f"LibreOffice could not make the PDF of {docx.name} (exit status {process.returncode}: {said or 'no output'})."
            )
        if not made.is_file() or made.stat().st_size == 0 or made.read_bytes()[:5] != b"%PDF-":
            raise WordPdfError(
                f"LibreOffice exited without writing a PDF of {docx.name} ({said or 'no output'})."
            )
        pdf.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(made), str(pdf))
    return pdf


def _end(process: subprocess.Popen) -> None:
    """Stop a conversion that overran: its whole process group, then wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
