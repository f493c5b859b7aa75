"""How failures reach the user: every bad input becomes ``gr.Error``; bugs get a reference, never a path.

The only Gradio object used is :class:`gr.Error`, the documented way to show a
message in the browser (and to return it to an API client) while the server
keeps serving:

* every ``ValueError`` from :mod:`models` (``ImageReadError``,
  ``InvalidImageError``, ``UnknownModelError``, ``WeightsError``) becomes a
  ``gr.Error`` with the library's message;
* a full disk, a read-only or unwritable result folder (``OSError`` ENOSPC,
  EDQUOT, EROFS, EACCES, EPERM) and running out of memory are resource
  problems, not bugs: a ``gr.Error`` says which ("could not write the result:
  the disk is full");
* anything else is a bug: it is logged with a generated reference (never the
  uploaded file's name or path, which may carry patient identifiers) and the
  user sees "internal error (ref ...)".
"""

from __future__ import annotations

import errno
import logging
import os
import traceback
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import gradio as gr
import torch

import models
from models.io import display_name, printable
from models.io.dicom import is_codec_panic

logger = logging.getLogger("medenhance.studio")
# Pillow logs every TIFF tag's value at DEBUG (ImageDescription, DocumentName, Artist... may name the
# patient): a server running at DEBUG must not copy them into its log.
logging.getLogger("PIL").setLevel(max(logging.getLogger("PIL").level, logging.INFO))


# Server install location, removed from messages shown to users (e.g. weights file paths).
_INSTALL_DIR = str(Path(models.__file__).resolve().parent.parent) + os.sep


def _scrub(text: str, path: str | None) -> str:
    """Remove the upload's path and file name (possibly a patient's name) and server paths from a message.

    Also in the escaped / shortened forms the reader's messages use (``models.io.display_name``).
    """
    text = text.replace(_INSTALL_DIR, "")
    if path:
        base = os.path.basename(path)
        forms = {path, base, str(Path(path).parent), printable(path), printable(base), display_name(path)}
        for s in sorted(forms, key=len, reverse=True):
            if len(s) > 3:
                text = text.replace(s, "the uploaded file")
    return text


# Write failures that are the server's resources, not a bug: errno -> what to tell the user
# (only in the stages that write files; elsewhere an OSError is a bug).
_WRITE_STAGES = ("saving the result", "de-identifying the DICOM header")


_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the result folder is on a read-only file system",
    errno.EACCES: "the result folder is not writable",
    errno.EPERM: "the result folder is not writable",
}


@contextmanager
def _as_user_errors(stage: str, path: str | None = None) -> Iterator[None]:
    """Map library errors to ``gr.Error``; log and hide everything unexpected."""
    try:
        yield
    except gr.Error:
        raise
    except OSError as e:
        reason = _WRITE_ERRORS.get(e.errno) if stage in _WRITE_STAGES else None
        if reason is None:
            _internal_error(e, stage, path)
        logger.error("could not write while %s: %s (errno %s)", stage, reason, errno.errorcode.get(e.errno, e.errno))
        what = "the result" if stage == "saving the result" else f"a working file (while {stage})"
        raise gr.Error(f"Could not write {what}: {reason}. Nothing was saved; the server keeps running — "
                       "please tell its operator.", title="Cannot save", print_exception=False) from None
    except (MemoryError, torch.OutOfMemoryError):
        logger.error("out of memory while %s", stage)
        raise gr.Error(f"The server ran out of memory while {stage}. Try a smaller image, a smaller frame "
                       "or another model.", title="Out of memory", print_exception=False) from None
    except ValueError as e:  # every documented MedEnhanceError is a ValueError
        title = {"ImageReadError": "Cannot read this file", "InvalidImageError": "Unsupported image",
                 "UnknownModelError": "Unknown model", "WeightsError": "Model not available",
                 "InvalidOptionError": "Bad option",
                 "DeidentificationError": "Cannot de-identify this file",
                 "ExportError": "Cannot export"}.get(type(e).__name__, "Bad input")
        raise gr.Error(_scrub(str(e), path) or title, title=title, print_exception=False) from None
    except Exception as e:  # a bug: keep serving, keep the log free of identifiers
        _internal_error(e, stage, path)
    except BaseException as e:  # a Rust codec's panic is a BaseException: still one failed request, not a dead worker
        if not is_codec_panic(e):
            raise
        _internal_error(e, stage, path)


def _internal_error(e: BaseException, stage: str, path: str | None) -> None:
    """Log an unexpected exception under a generated reference and raise the user's ``gr.Error``."""
    ref = uuid.uuid4().hex[:8]
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    logger.error("internal error ref=%s during %s:\n%s", ref, stage, _scrub(tb, path))
    raise gr.Error(f"Internal error while {stage} (reference {ref}); it has been logged. "
                   "Try again, or another model or file.", title="Internal error", print_exception=False) from None
