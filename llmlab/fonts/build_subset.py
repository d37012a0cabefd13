"""Rebuild `NotoSansSC-LLMLab-Regular.otf`, the Chinese font `llmlab.plots` gives matplotlib.

Usage (maintainers only; the course never runs this):

    .venv/bin/python llmlab/fonts/build_subset.py path/to/NotoSansSC-Regular.otf

The source is Noto Sans SC Regular, version 2.004 (the OTF of the Noto CJK project, sha256
faa6c9df652116dde789d351359f3d7e5d2285a2b2a1f04a2d7244df706d5ea9), licensed under the SIL Open
Font License 1.1 (OFL.txt beside this file). The subset keeps every character of GB 2312 (the 6,763
common simplified hanzi and its symbols), ASCII, Latin-1, general and CJK punctuation, full-width
forms and any other hanzi found in the lectures or in `llmlab`. It drops hinting (matplotlib's
FreeType auto-hints) and layout tables (matplotlib does no shaping), and renames the family so that
a full Noto Sans SC installed on the machine is never mistaken for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FAMILY = "Noto Sans SC LLM Lab"
POSTSCRIPT = "NotoSansSC-LLMLab-Regular"
OUTPUT = HERE / f"{POSTSCRIPT}.otf"
RANGES = [(0x20, 0x7E), (0xA0, 0xFF), (0x2010, 0x206F), (0x3000, 0x303F), (0xFF00, 0xFFEF)]


def is_hanzi(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def code_points() -> set[int]:
    points = {cp for lo, hi in RANGES for cp in range(lo, hi + 1)}
    for cp in range(0x80, 0x10000):
        try:
            if len(chr(cp).encode("gb2312")) == 2:
                points.add(cp)
        except UnicodeEncodeError:
            pass
    sources = [*(ROOT / "course").glob("*.ipynb"), *(ROOT / "llmlab").rglob("*.py")]
    for path in sources:
        points.update(ord(ch) for ch in path.read_text(encoding="utf-8") if is_hanzi(ch))
    return points


def build(source: Path) -> None:
    font = TTFont(source)
    options = subset.Options()
    options.layout_features = []
    options.hinting = False
    options.name_IDs = ["*"]  # keep the copyright, licence and licence URL records
    options.drop_tables += ["DSIG", "BASE", "VORG", "vhea", "vmtx"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(code_points()))
    subsetter.subset(font)
    names = font["name"]
    for record in list(names.names):
        if record.nameID in (1, 4, 16):
            names.setName(FAMILY if record.nameID != 4 else f"{FAMILY} Regular", record.nameID,
                          record.platformID, record.platEncID, record.langID)
        elif record.nameID == 3:
            names.setName(f"2.004;LLMLAB;{POSTSCRIPT}", 3, record.platformID, record.platEncID,
                          record.langID)
        elif record.nameID == 6:
            names.setName(POSTSCRIPT, 6, record.platformID, record.platEncID, record.langID)
    cff = font["CFF "].cff
    cff.fontNames = [POSTSCRIPT]
    cff[POSTSCRIPT].FullName = f"{FAMILY} Regular"
    cff[POSTSCRIPT].FamilyName = FAMILY
    font.save(OUTPUT)
    print(f"{OUTPUT.name}: {len(font.getBestCmap())} characters, {OUTPUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
