"""Reading images for a model: which files count as images, and a decode that fails clearly."""

from __future__ import annotations

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def open_rgb(path: str):
    """The image as RGB, fully decoded (a truncated file fails here): ValueError saying why."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (PIL cannot identify it)") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"refused: {exc}") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"unreadable image: {exc}") from None
