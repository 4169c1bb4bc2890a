"""Stand-in artwork: a real, deterministic PNG per prompt, so offline runs produce images a person can check.

The same prompt (and inputs) always gives the same bytes, different prompts give visibly different
pictures, and the prompt's words are written on the image, so a look at an output folder shows which job
made which file. Input images are pasted in as thumbnails so that editing jobs look like edits.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

#: How much bigger each requested `image_size` is than the stand-in's base size.
SIZE_FACTORS: dict[str, int] = {"1K": 1, "2K": 2, "4K": 4}


def dimensions(aspect_ratio: str | None, image_size: str | None, long_side: int) -> tuple[int, int]:
    """Width and height for an `aspect_ratio` like "16:9"; raises ValueError for a malformed one."""
    scaled = long_side * SIZE_FACTORS.get(image_size or "1K", 1)
    if not aspect_ratio:
        return scaled, scaled
    left, sep, right = aspect_ratio.partition(":")
    if not (sep and left.isdigit() and right.isdigit() and int(left) > 0 and int(right) > 0):
        raise ValueError(f"aspect_ratio must look like W:H, got {aspect_ratio!r}")
    width, height = int(left), int(right)
    if width >= height:
        return scaled, max(1, round(scaled * height / width))
    return max(1, round(scaled * width / height)), scaled


def decode_input(data: bytes) -> Image.Image | None:
    """An input image as Pillow reads it, or None when the bytes are not an image."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return image.convert("RGB")


def draw(
    prompt: str,
    size: tuple[int, int],
    *,
    inputs: Sequence[Image.Image] = (),
    variant: int = 0,
) -> bytes:
    """PNG bytes for `prompt`: colours and shapes from its hash, its text on top, inputs pasted in."""
    digest = hashlib.sha256(prompt.encode())
    digest.update(variant.to_bytes(4, "big"))
    for image in inputs:
        digest.update(image.tobytes())
    rng = random.Random(digest.digest())
    width, height = size

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    # A two-pixel image stretched bilinearly is a vertical gradient between two hashed colours.
    gradient = Image.new("RGB", (1, 2))
    gradient.putdata([colour(), colour()])
    canvas = gradient.resize(size, Image.Resampling.BILINEAR)
    pen = ImageDraw.Draw(canvas, "RGBA")
    for _ in range(rng.randint(3, 7)):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        fill = (*colour(), 180)
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            pen.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == "rectangle":
            pen.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            pen.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=fill)
    _paste_inputs(canvas, inputs)
    _write_caption(pen, prompt, size)
    out = io.BytesIO()
    canvas.save(out, "PNG")
    return out.getvalue()


def _paste_inputs(canvas: Image.Image, inputs: Sequence[Image.Image]) -> None:
    """Thumbnails of the inputs in a framed row along the bottom edge."""
    if not inputs:
        return
    width, height = canvas.size
    box = max(8, min(height // 3, width // len(inputs) - 8))
    x = 4
    for image in inputs:
        thumb = image.copy()
        thumb.thumbnail((box, box))
        y = height - thumb.height - 4
        ImageDraw.Draw(canvas).rectangle(
            (x - 2, y - 2, x + thumb.width + 1, y + thumb.height + 1), fill="white"
        )
        canvas.paste(thumb, (x, y))
        x += thumb.width + 8


def _write_caption(pen: ImageDraw.ImageDraw, prompt: str, size: tuple[int, int]) -> None:
    """The prompt, wrapped to the width, on a translucent band at the top (cut when too long)."""
    width, height = size
    font_size = max(10, min(width, height) // 14)
    font = ImageFont.load_default(font_size)
    chars_per_line = max(8, int(width / (font_size * 0.55)))
    max_lines = max(1, (height // 2) // (font_size + 2))
    lines = textwrap.wrap(prompt, chars_per_line, max_lines=max_lines, placeholder=" ...") or [""]
    text = "\n".join(lines)
    bottom = pen.multiline_textbbox((6, 6), text, font=font, spacing=2)[3]
    pen.rectangle((0, 0, width, bottom + 6), fill=(0, 0, 0, 120))
    pen.multiline_text((6, 6), text, font=font, fill="white", spacing=2)
