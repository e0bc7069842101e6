"""Sample grids: pictures of a batch of samples with their rewards, for run folders, MLflow and the report.

Pure functions from samples (or their decoded strings) to ``H x W x 3`` uint8 arrays; which one draws a backbone's
samples is its sample space's choice (``benchsuite.spaces``). Three layouts, each under a one-line header of
``GRID_HEADER_PX`` px:

- ``sample_grid``: image tiles, one row per condition, the reward under each tile;
- ``text_grid``: one monospace text row per sequence (the best ``rows`` by reward), the reward left of the string;
- ``molecule_grid``: RDKit structure drawings (``rdkit.Chem.Draw.MolToImage``), best first, the reward and
  SMILES under each drawing.

The report cuts legible panels out of them (``sample_grid_panel``, ``text_grid_panel``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from .domains.molecules import mol_from_smiles

MAX_TILE = 128
"""Largest tile width (px) of an image grid."""

GRID_HEADER_PX = 16
"""Height of the one-line header of every grid (report panels crop it)."""
_GRID_LEFT, _GRID_PAD, _GRID_PER_ROW = 18, 4, 8

TEXT_ROW_PX = 12
"""Height of one text row of ``text_grid`` (the report panel keeps whole rows)."""

MOLECULE_TILE = (220, 16 * TEXT_ROW_PX + 4)
"""Width and height (px) of one drawing of ``molecule_grid``, legend included: one row of drawings is the height of
the report's sequence panel (``text_grid_panel``: 16 text rows), so a molecule task's panel shows its best four."""


@functools.cache
def monospace_font(size: int = 11):
    """DejaVu Sans Mono (shipped with matplotlib, so every install draws the same text rows) at ``size`` px."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans Mono", fallback_to_default=False), size)


def _best(rewards: Tensor | None, n: int, rows: int) -> list[int]:
    """Indices of the ``rows`` best samples by reward (ties in sample order), or the first ``rows``."""
    if rewards is None:
        return list(range(min(rows, n)))
    return torch.argsort(rewards.detach().cpu(), descending=True, stable=True)[:rows].tolist()


def sample_grid_panel(grid, columns: int = 4):
    """A report panel cut from a ``sample_grid`` image (PIL) drawn with the default ``per_row``: the header line
    dropped and the first ``columns`` samples of every row kept, so that the reward captions stay legible at a
    paper's column width. The canvas is ``left + per_row * (cell + pad) + pad`` wide, so the cut is exact."""
    width, height = grid.size
    step = (width - _GRID_LEFT - _GRID_PAD) // _GRID_PER_ROW  # cell width + pad
    return grid.crop((0, GRID_HEADER_PX, min(width, _GRID_LEFT + _GRID_PAD + columns * step), height))


def sample_grid(images: Tensor, conditions: Tensor | None, rewards: Tensor | None = None, per_row: int = _GRID_PER_ROW,
                scale: int = 4, label: str = "reward") -> np.ndarray:
    """A captioned ``H x W x 3`` uint8 grid: one row per condition (its first ``per_row`` samples), upscaled
    ``scale`` times, the condition id left of each row and each sample's reward under it.

    Args:
        images: ``N x C x h x w`` in [0, 1], C in {1, 3}.
        conditions: ``N`` or None (then rows of ``per_row`` in order).
        rewards: ``N`` rewards to print under the samples, or None.
        label: what the rewards are (named in the header line).
    """
    from PIL import Image, ImageDraw, ImageFont

    imgs = images.detach().cpu().float().clamp(0, 1)
    if imgs.shape[-1] * scale > MAX_TILE:  # large images (SD, 512 px): downscale the tiles instead of upscaling
        size = (MAX_TILE * imgs.shape[-2] // imgs.shape[-1], MAX_TILE)
        imgs = torch.nn.functional.interpolate(imgs, size=size, mode="area")
        scale = 1
    imgs = imgs.expand(-1, 3, -1, -1)  # grey (C = 1) to RGB; RGB unchanged
    index = torch.arange(len(imgs))
    if conditions is None:
        rows = [("", index[i : i + per_row]) for i in range(0, min(len(imgs), 8 * per_row), per_row)]
    else:
        conds = conditions.cpu()
        rows = [(str(int(c)), index[conds == c][:per_row]) for c in torch.unique(conds)]
    font = ImageFont.load_default()
    h, w = imgs.shape[-2] * scale, imgs.shape[-1] * scale
    cell_w, cap_h, left, pad, top = max(w, 42), (12 if rewards is not None else 0), _GRID_LEFT, _GRID_PAD, GRID_HEADER_PX
    canvas = Image.new("RGB", (left + per_row * (cell_w + pad) + pad, top + len(rows) * (h + cap_h + pad) + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    header = "rows: condition" + (f"; under each sample: {label}" if rewards is not None else "")
    draw.text((3, 2), header, fill="black", font=font)
    for i, (name, idx) in enumerate(rows):
        y = top + pad + i * (h + cap_h + pad)
        draw.text((3, y + h // 2 - 6), name, fill="black", font=font)
        for j, k in enumerate(idx.tolist()):
            x0 = left + pad + j * (cell_w + pad)
            tile = (imgs[k].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            canvas.paste(Image.fromarray(tile).resize((w, h), Image.NEAREST), (x0 + (cell_w - w) // 2, y))
            if rewards is not None:
                text = f"{float(rewards[k]):+.3f}"
                tw = draw.textlength(text, font=font)
                draw.text((x0 + (cell_w - tw) / 2, y + h + 1), text, fill="black", font=font)
    return np.array(canvas)  # a writable copy


def text_grid_panel(grid, rows: int = 16, cell_h: int = TEXT_ROW_PX):
    """A report panel cut from a ``text_grid`` (or ``molecule_grid``) image (PIL): the header line dropped, the
    best ``rows`` text rows kept (on a molecule grid: its first row of drawings)."""
    width, height = grid.size
    return grid.crop((0, GRID_HEADER_PX, width, min(height, GRID_HEADER_PX + rows * cell_h + 4)))


GRID_PANELS = {"tiles": (sample_grid_panel, 4), "rows": (text_grid_panel, 2)}
"""``SampleSpace.grid_panel`` -> (the cut that turns a sample grid into a legible report panel, panels per row):
image tiles 4 per row, text rows (wide: one row per sample) and molecule drawings 2 per row."""


def text_grid(lines: list[str], rewards: Tensor | None = None, rows: int = 32, label: str = "reward",
              what: str = "sequence") -> np.ndarray:
    """An ``H x W x 3`` uint8 picture of text samples: one monospace row per sample (the ``rows`` best by reward),
    the reward, then the sample's string (``what`` names it in the header).

    Args:
        lines: one string per sample (a decoded sequence, a SMILES).
        rewards: ``N`` rewards, or None (then the first ``rows`` in order, without a reward column).
    """
    from PIL import Image, ImageDraw

    font = monospace_font()
    order = _best(rewards, len(lines), rows)
    texts = [(f"{float(rewards[k]):+.3f}  " if rewards is not None else "") + lines[k] for k in order]
    scored = f"best {len(order)} of {len(lines)} by {label}; each row: {label}, then the {what}"
    header = scored if rewards is not None else f"first {len(order)} of {len(lines)}; each row: the {what}"
    width = max([font.getlength(t) for t in texts] + [font.getlength(header)]) + 8
    canvas = Image.new("RGB", (int(width), GRID_HEADER_PX + len(texts) * TEXT_ROW_PX + 4), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((3, 2), header, fill="black", font=font)
    for i, text in enumerate(texts):
        draw.text((3, GRID_HEADER_PX + i * TEXT_ROW_PX), text, fill="black", font=font)
    return np.array(canvas)


def molecule_grid(smiles: list[str], rewards: Tensor | None = None, rows: int = 16, per_row: int = 4,
                  label: str = "reward") -> np.ndarray:
    """An ``H x W x 3`` uint8 grid of RDKit structure drawings (``rdkit.Chem.Draw.MolToImage``) of the ``rows`` best
    molecules by reward, ``per_row`` per row, each above two text lines: its reward and its SMILES (shortened to
    fit); an empty or unparsable SMILES is an empty tile named so. Needs RDKit (the ``molecules`` extra)."""
    from PIL import Image, ImageDraw
    from rdkit.Chem import Draw

    font = monospace_font()
    options = Draw.MolDrawOptions()
    options.fixedBondLength = 24  # px: small molecules keep the scale of large ones instead of filling the tile
    width, height = MOLECULE_TILE
    drawing_h = height - 2 * TEXT_ROW_PX - 4
    fits = int((width - 6) // font.getlength("M"))  # characters per legend line
    order = _best(rewards, len(smiles), rows)
    scored = f"best {len(order)} of {len(smiles)} by {label}; under each molecule: {label}, SMILES"
    header = scored if rewards is not None else f"first {len(order)} of {len(smiles)} molecules; under each: SMILES"
    n_rows = -(-len(order) // per_row)
    canvas = Image.new("RGB", (per_row * width, GRID_HEADER_PX + n_rows * height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((3, 2), header, fill="black", font=font)
    for j, k in enumerate(order):
        x, y = (j % per_row) * width, GRID_HEADER_PX + (j // per_row) * height
        mol = mol_from_smiles(smiles[k])
        if mol is not None:
            canvas.paste(Draw.MolToImage(mol, size=(width, drawing_h), options=options).convert("RGB"), (x, y))
        text = smiles[k] if mol is not None else "(empty molecule)"
        text = text if len(text) <= fits else text[: fits - 1] + "…"
        lines = ([f"{label} {float(rewards[k]):+.3f}"] if rewards is not None else []) + [text]
        for i, line in enumerate(lines):
            draw.text((x + (width - font.getlength(line)) / 2, y + drawing_h + i * TEXT_ROW_PX), line, fill="black",
                      font=font)
    return np.array(canvas)
