"""Reading untrusted zips (data uploads, model exports): whatever goes wrong is one `BadInputError`.

`zipfile` fails in many ways on odd archives: a bad CRC or truncated stream (`BadZipFile`, `zlib.error`,
`EOFError`), an encrypted entry (`RuntimeError`), an unknown compression method (`NotImplementedError`),
entries the file system cannot hold, such as a file `a` beside `a/b.png` or a 300-byte name (`OSError`).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

from facelab.errors import BadInputError


def open_zip(source: str | Path | bytes, label: str, what: str = "not a readable zip file") -> zipfile.ZipFile:
    """Open a zip from a path or bytes; `label` names it in messages, `what` says what it is not."""
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise BadInputError(f"{label}: {what} ({err})") from None


def extract_entry(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, label: str,
                  limit: int) -> int:
    """Copy one entry to `target` (making its folder) and return the bytes written.

    Stops past `limit` bytes, since a header's sizes can lie (a zip bomb).
    """
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise BadInputError(f"{label}: unpacks to more than its stated size; refused as a zip bomb")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise BadInputError(f"{label}: corrupt zip entry {member.filename!r} ({err})") from None
    except (RuntimeError, NotImplementedError) as err:  # encrypted, or a compression method zipfile lacks
        raise BadInputError(f"{label}: zip entry {member.filename!r} cannot be read ({err})") from None
    except OSError as err:
        raise BadInputError(f"{label}: zip entry {member.filename!r} cannot be unpacked "
                            f"({err.strerror or err})") from None
    return written
