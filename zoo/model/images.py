"""Reading images for a model: which files count as images, and a decode that fails clearly."""

from __future__ import annotations

from zoo.errors import ImageError

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
