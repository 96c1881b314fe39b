"""Whether a path that came from data (a manifest, a commit, a URI, a card) may be joined under a directory.

Every place that joins data into a path asks :func:`unsafe_relpath` first: bundle manifests, the
Hugging Face cache layout, hub repos and object-store keys, source URIs, run files. A safe path is
relative, POSIX (``/``-separated), and has no empty, ``.`` or ``..`` part, no backslash (a separator
elsewhere) and no NUL; so ``root / path`` always stays inside ``root``, wherever ``root`` is.
"""

from __future__ import annotations


def unsafe_relpath(path: object) -> str | None:
    """Why ``path`` could escape the directory it is joined under, or None when it cannot."""
    if not isinstance(path, str) or not path:
        return "it is empty" if path == "" else f"it is not text ({type(path).__name__})"
    if "\0" in path:
        return "it holds a NUL byte"
    if "\\" in path:
        return "it holds a backslash"
    if path.startswith("/"):
        return "it is absolute"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return f"it has a {part!r} part" if part else "it has an empty part"
    return None


def is_safe_relpath(path: object) -> bool:
    """``unsafe_relpath(path) is None``."""
    return unsafe_relpath(path) is None
