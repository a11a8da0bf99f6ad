"""Logging: a user-visible log file in the platform log dir; stderr for warnings (all with -v).

Three rules keep the log safe and quiet:
- every record is redacted before any handler writes it (Hugging Face tokens, Authorization and
  Bearer values, API keys, token= query parameters): a server that echoes a header must not put
  a secret in fitbench.log;
- third-party libraries (HTTP clients, the Hub client, fonts, plotting) log at WARNING unless -v:
  their DEBUG output is response headers and font tables, not FitBench's story;
- stderr gets one line per warning; a traceback goes to the log file only (-v shows it too).
A log file that cannot be written (a full disk) is said once and then left alone, instead of
Python's "--- Logging error ---" block on every call.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import re
import sys
from pathlib import Path

from fitbench.core import paths

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LIBRARIES = (
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
    "huggingface_hub",
    "urllib3",
    "fontTools",
    "matplotlib",
    "PIL",
    "filelock",
    "asyncio",
)
REDACTED = "***"
_SECRETS = (
    # Hugging Face user and org tokens
    (re.compile(r"\b(hf_|api_org_)[A-Za-z0-9]{8,}"), rf"\1{REDACTED}"),
    # header values, in a dict repr, a raw header line or key=value
    (
        re.compile(
            r"""(?i)(['"]?(?:proxy-)?authorization['"]?\s*[:=]\s*['"]?)"""
            r"""(?:(bearer|basic|token)\s+)?[^'"\s,}]+"""
        ),
        rf"\1\2 {REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"""(?i)(\b['"]?(?:x-)?(?:api[_-]?key|access[_-]?token|token|password|secret)['"]?"""
            r"""\s*[:=]\s*['"]?)[^'"\s,&}]+"""
        ),
        rf"\1{REDACTED}",
    ),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text.replace(f"  {REDACTED}", f" {REDACTED}")


class RedactFilter(logging.Filter):
    """Rewrites the record's message (and traceback) with secrets redacted, before any
    formatter sees it; on every handler, so no path around it exists."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call (wrong args): log what there is
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class OneLineFormatter(logging.Formatter):
    """A warning on stderr is one line; its traceback is in the log file."""

    def __init__(self, fmt: str, log_path: Path) -> None:
        super().__init__(fmt)
        self.log_path = log_path

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().splitlines()[0] if record.getMessage() else ""
        line = f"{record.levelname}: {text}"
        if record.exc_info or record.exc_text:
            line += f" (details in {self.log_path})"
        return line


class SafeFileHandler(logging.handlers.RotatingFileHandler):
    """A log file that stops trying after the first OSError (a full disk, a removed folder)
    and says so once on stderr."""

    broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self.broken = True
            reason = exc.strerror or type(exc).__name__
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(
                    f"fitbench: cannot write the log file {self.baseFilename} ({reason}); "
                    "logging to it stops for this run\n"
                )
            return
        super().handleError(record)


def log_file() -> Path:
    return paths.log_dir() / "fitbench.log"


def setup(verbose: bool = False) -> Path:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if getattr(handler, "_fitbench", False):
            root.removeHandler(handler)
            handler.close()
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    path = log_file()
    handlers: list[logging.Handler] = []
    try:
        file_handler: logging.Handler = SafeFileHandler(
            path, maxBytes=5_000_000, backupCount=3, encoding="utf-8", delay=True
        )
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(FORMAT))
        handlers.append(file_handler)
    except OSError as exc:  # an unwritable log dir must not stop the app
        sys.stderr.write(f"fitbench: no log file at {path} ({exc.strerror or exc})\n")
    stream = logging.StreamHandler()
    stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stream.setFormatter(
        logging.Formatter("%(levelname)s: %(message)s") if verbose else OneLineFormatter("", path)
    )
    handlers.append(stream)
    redactor = RedactFilter()
    for handler in handlers:
        handler.addFilter(redactor)
        setattr(handler, "_fitbench", True)  # noqa: B010 - marks our own handlers
        root.addHandler(handler)
    return path
