"""A contact sheet of localisation results: the picture a person checks before trusting a number.

Each tile is one image with its ground-truth boxes (blue) and the predicted boxes, green when the
guess is correct under the ILSVRC rule and red when not (Appendix A), each labelled with its class.
Pillow only; written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data.images import load_rgb
from ..errors import VGGError
from ..fileio import atomic_write
from .boxes import as_boxes

GT_COLOUR = (40, 120, 255)
RIGHT_COLOUR = (0, 200, 60)
WRONG_COLOUR = (230, 30, 30)
BACKGROUND = (250, 250, 250)
TEXT = (20, 20, 20)


@dataclass
class SheetItem:
    """One tile: an image (path or PIL image) and boxes in that image's own pixels."""

    image: object
    gt_boxes: object = ()
    gt_labels: list[str] = field(default_factory=list)
    pred_boxes: object = ()
    pred_labels: list[str] = field(default_factory=list)
    pred_correct: list[bool] = field(default_factory=list)
    caption: str = ""


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy, text: str, colour, font, limit) -> None:
    """Text on a filled tab of the box's colour, kept inside the tile."""
    if not text:
        return
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    w, h = r - l + 4, b - t + 2
    x = min(max(xy[0], limit[0]), limit[2] - w)
    y = xy[1] - h if xy[1] - h >= limit[1] else xy[1]
    draw.rectangle([x, y, x + w, y + h], fill=colour)
    draw.text((x + 2 - l, y + 1 - t), text, fill=(255, 255, 255), font=font)


def _tile(item: SheetItem, thumb: int, font, caption_h: int) -> Image.Image:
    img = item.image if isinstance(item.image, Image.Image) else load_rgb(item.image)
    img = img.convert("RGB")
    scale = thumb / max(img.width, img.height)
    tw, th = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    tile = Image.new("RGB", (thumb, thumb + caption_h), BACKGROUND)
    ox, oy = (thumb - tw) // 2, (thumb - th) // 2
    tile.paste(img.resize((tw, th), Image.BILINEAR), (ox, oy))
    d = ImageDraw.Draw(tile)
    limit = (ox, oy, ox + tw, oy + th)
    width = max(2, thumb // 110)

    def place(box):  # max-exclusive image pixels -> Pillow's inclusive tile pixels
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = sorted((ox + x0 * scale, ox + x1 * scale - 1))
        y0, y1 = sorted((oy + y0 * scale, oy + y1 * scale - 1))
        return [x0, y0, x1, y1]

    gt = as_boxes(item.gt_boxes)
    pred = as_boxes(item.pred_boxes)
    # Rectangles first and labels on top, so no line crosses a label; predictions from the worst
    # guess up, so the first guess is drawn last.
    preds = []
    for n in reversed(range(len(pred))):
        ok = bool(item.pred_correct[n]) if n < len(item.pred_correct) else False
        preds.append(
            (
                place(pred[n]),
                item.pred_labels[n] if n < len(item.pred_labels) else "",
                RIGHT_COLOUR if ok else WRONG_COLOUR,
            )
        )
    for box in gt:
        d.rectangle(place(box), outline=GT_COLOUR, width=width)
    for r, _, colour in preds:
        d.rectangle(r, outline=colour, width=width)
    for box, text in zip(gt, item.gt_labels):  # at the bottom-left: predictions label their top-left
        r = place(box)
        _label(d, (r[0], r[3] + 1), text, GT_COLOUR, font, limit)
    for r, text, colour in preds:
        _label(d, (r[0], r[1]), text, colour, font, limit)
    if item.caption:
        d.text((4, thumb + 2), item.caption, fill=TEXT, font=font)
    return tile


def contact_sheet(items, out_png, cols: int = 4, thumb: int = 224, title: str = "") -> Path:
    """Draw `items` (:class:`SheetItem` or dicts of its fields) as a grid of `cols` tiles of
    `thumb` pixels, with a legend line, and write it atomically to `out_png`."""
    items = [it if isinstance(it, SheetItem) else SheetItem(**it) for it in items]
    if not items:
        raise VGGError(f"{out_png}: no images for the contact sheet")
    if cols < 1 or thumb < 32:
        raise VGGError(f"contact sheet needs cols >= 1 and thumb >= 32, got cols={cols}, thumb={thumb}")
    font = _font(max(10, thumb // 18))
    big = _font(max(12, thumb // 14))
    line_h = max(14, thumb // 14)
    caption_h = line_h + 4 if any(it.caption for it in items) else 0
    pad = 6
    cols = min(cols, len(items))
    rows = (len(items) + cols - 1) // cols
    title_h = line_h + 2 if title else 0
    header_h = title_h + line_h + 2 * pad
    sheet = Image.new(
        "RGB", (cols * (thumb + pad) + pad, header_h + rows * (thumb + caption_h + pad) + pad), BACKGROUND
    )
    d = ImageDraw.Draw(sheet)
    if title:
        d.text((pad, pad), title, fill=TEXT, font=big)
    x = pad
    for colour, text in (
        (GT_COLOUR, "ground truth"),
        (RIGHT_COLOUR, "correct (IoU >= 0.5, right class)"),
        (WRONG_COLOUR, "wrong"),
    ):
        y = pad + title_h
        d.rectangle([x, y + 2, x + line_h - 4, y + line_h - 2], outline=colour, width=2)
        d.text((x + line_h, y), text, fill=TEXT, font=font)
        x += line_h + int(d.textlength(text, font=font)) + 3 * pad
    for n, item in enumerate(items):
        r, c = divmod(n, cols)
        sheet.paste(
            _tile(item, thumb, font, caption_h),
            (pad + c * (thumb + pad), header_h + r * (thumb + caption_h + pad)),
        )
    return atomic_write(out_png, lambda tmp: sheet.save(tmp, format="PNG"))
