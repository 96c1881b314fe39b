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
    contribute their image files, sorted. No paths, or only directories without images, is an error."""
    out = []
    for p in map(os.fspath, paths):
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            out.append(p)
    if not out:
        raise UsageError("no images given (files, or directories of .jpg/.png/...)")
    return out
