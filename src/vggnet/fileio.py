"""Writing files so that nothing already written is ever lost or half-written.

- :func:`claim_output` is asked before any work: a command may write a path that does not exist;
  it replaces an existing file only when told to (``--force``), and then only a file of the kind
  it writes (a weight file is never replaced by a picture, whatever the flags). A folder is never
  taken for a file.
- :func:`atomic_write` writes to a temporary file in the same folder, fsyncs it, then renames it
  over the target (atomic on POSIX): a crash leaves the old file or the new one, never half of
  one. Temporary files left by a killed write of the same target are removed; files get the
  usual permissions (0666 less the umask), not a temporary file's 0600.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError, safe_open

from .errors import VGGError

SUFFIX_KINDS = {
    ".md": "Markdown",
    ".csv": "CSV",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".txt": "text",
    ".html": "HTML",
    ".onnx": "ONNX",
    ".caffemodel": "Caffe weights",
    ".tar": "tar shard",
}


def loads_json(text):
    """``json.loads``, where a document nested too deeply for the parser is a ValueError like any
    other malformed document (not a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _safetensors_kind(head: bytes, size: int, path: Path) -> str | None:
    if len(head) < 9 or head[8:9] != b"{":
        return None
    n = struct.unpack("<Q", head[:8])[0]
    if n > min(size - 8, 100_000_000):
        return None
    with open(path, "rb") as f:
        f.seek(8)
        try:
            header = loads_json(f.read(n))
        except ValueError:
            return None
    meta = header.get("__metadata__") or {} if isinstance(header, dict) else {}
    if "vggnet" in meta:
        return "vggnet weights"
    if "ids" in meta and "protocols" in meta:
        return "posteriors"
    if "vggnet-features" in meta:
        return "features"
    if "vggnet-boxes" in meta:
        return "box predictions"
    return "safetensors"


def _json_kind(path: Path) -> str:
    try:
        doc = loads_json(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError):
        return "JSON"
    if isinstance(doc, dict):
        for key, kind in (
            ("mean_rgb", "statistics"),
            ("protocols", "results"),
            ("summary", "results"),
            ("kind", "results"),
            ("splits", "splits"),
            ("shards", "shard index"),
        ):
            if key in doc:
                return kind
    return "JSON"


def file_kind(path) -> str:
    """What an existing path holds, read from its first bytes (and its name for text formats)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return "unreadable file"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head.startswith(b"PK\x03\x04"):
        return "PyTorch state dict"
    kind = _safetensors_kind(head, size, path)
    if kind:
        return kind
    if path.suffix == ".json" or head.lstrip()[:1] == b"{":
        return _json_kind(path)
    return SUFFIX_KINDS.get(path.suffix.lower(), "file")


def _a(kind: str) -> str:
    return ("an " if kind[:1].lower() in "aeiou" or kind.startswith(("ONNX", "HTML")) else "a ") + kind


def claim_output(path, kind: str, force: bool = False) -> Path:
    """Check, before any work, that `path` may be written as a `kind` file (see module doc)."""
    path = Path(path)
    if path.is_dir():
        raise VGGError(f"{path} is a folder; give a file name to write")
    if path.exists():
        existing = file_kind(path)
        if existing != kind:
            raise VGGError(
                f"{path} holds {_a(existing)} file, not {_a(kind)} file; refusing to overwrite it, "
                f"even with --force (it replaces only a file of the same kind)"
            )
        if not force:
            raise VGGError(
                f"{path} exists ({existing}); refusing to overwrite it (use --force to replace it "
                f"with a new {kind} file)"
            )
    check_writable_folder(path.parent)
    return path


def claim_folder(folder, outputs: dict[str, str], force: bool = False) -> Path:
    """The same for an output folder that will hold files ``name -> kind``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise VGGError(f"{folder} is a file ({file_kind(folder)}); give a folder to write into")
    for name, kind in outputs.items():
        claim_output(folder / name, kind, force)
    return folder


def check_writable_folder(folder) -> None:
    """The folder exists (or can be made) and this process may create files in it."""
    folder = Path(folder) if str(folder) else Path(".")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise VGGError(f"cannot write into {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VGGError(f"cannot write into {folder}: permission denied")
    try:  # the permission bits do not tell everything (root, a read-only mount): try it
        fd, probe = tempfile.mkstemp(prefix=".vggnet-probe.", suffix=".tmp", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise VGGError(f"cannot write into {folder}: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to `path` only once it is complete on disk.
    A failure (a full disk, a permission denied) is reported against `path`, the file the user
    named, not against the temporary file or no file at all."""
    path = Path(path)
    try:
        return _atomic_write(path, write)
    except VGGError:
        raise
    except OSError as e:
        if e.filename is None or Path(str(e.filename)).name.startswith(f".{path.name}."):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except Exception as e:  # writers report a failed write in their own types (safetensors, torch.save)
        if "os error 28" in str(e) or _disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise VGGError(f"cannot write {path}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed write of this file
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_json(path, what: str, max_bytes: int = 100_000_000) -> dict:
    """A JSON object written by this package (statistics, results), read with every failure --
    missing, too large, not UTF-8, not JSON, not an object -- said in one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise VGGError(f"{path}: {size:,} bytes, too large for a {what} (at most {max_bytes:,})")
    try:
        doc = loads_json(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise VGGError(f"{path}: not a {what} (not UTF-8 text, byte {e.start})") from None
    except ValueError as e:
        raise VGGError(f"{path}: not a {what} (not valid JSON: {e})") from None
    if not isinstance(doc, dict):
        raise VGGError(f"{path}: not a {what} (a JSON {type(doc).__name__}, not an object)")
    return doc


def write_json(path, obj) -> Path:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    return atomic_write(path, write)


def write_text(path, text: str, errors: str = "backslashreplace") -> Path:
    """UTF-8 text; ``errors="surrogateescape"`` for file names, written as the bytes they have."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", errors=errors) as f:
            f.write(text)

    return atomic_write(path, write)


def read_safetensors(path, what: str, framework: str = "pt") -> tuple[dict, dict]:
    """The header metadata and the tensors of a safetensors file this package wrote (weights,
    posteriors, box predictions, features), every failure said in one line naming the file."""

    path = Path(path)
    if not path.is_file():
        raise VGGError(f"{what} not found: {path}")
    try:
        tensors = {}
        with safe_open(str(path), framework=framework) as f:
            header = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VGGError(f"{path}: not a {what} (not a readable safetensors file: {e})") from None
    return header, tensors
