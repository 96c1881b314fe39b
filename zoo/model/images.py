"""Reading images for a model: which files count as images, and a decode that fails clearly."""

from __future__ import annotations

import os

from zoo.errors import ImageError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def open_rgb(path: str):
    """The image as RGB, fully decoded (a truncated file fails here): :class:`~zoo.errors.ImageError` saying why."""
    from PIL import Image, UnidentifiedImageError  # lazy: Pillow only when an image is read

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (PIL cannot identify it)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused: {exc}") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ImageError(f"unreadable image: {exc}") from None


def image_files(paths: list[str | os.PathLike]) -> list[str]:
    """Files as given (whatever their extension: a bad one is reported when read); directories
    contribute every image file of their tree (see :func:`image_tree`). No paths, or only
    directories without images, is an error."""
    return [f for f, _, _ in image_tree(paths)]


def image_tree(paths: list[str | os.PathLike]) -> list[tuple[str, str | None, str | None]]:
    """``(file, directory given, class folder)`` for every image of ``paths``, in order.

    A directory contributes the image files of its whole tree, sorted, hidden folders left out
    (``.ipynb_checkpoints`` holds copies); the class folder of such a file is the first folder
    below the directory given (``DIR/cat/2019/x.jpg``: ``cat``, as an ImageFolder reads it), None
    for an image directly in it. A file given as a file has neither."""
    out: list[tuple[str, str | None, str | None]] = []
    for p in map(os.fspath, paths):
        if not os.path.isdir(p):
            out.append((p, None, None))
            continue
        found = []
        for folder, dirs, files in os.walk(p):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.join(folder, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        for f in sorted(found, key=lambda f: os.path.relpath(f, p).split(os.sep)):
            parts = os.path.relpath(f, p).split(os.sep)
            out.append((f, p, parts[0] if len(parts) > 1 else None))
    if not out:
        raise UsageError("no images given (files, or directories of .jpg/.png/...)")
    return out
