"""Plots that show Chinese: the course's font, registered with matplotlib.

matplotlib's own fonts have no Chinese characters: on a machine without a CJK font installed, a
label such as "词元" draws as empty boxes and a "Glyph ... missing" warning goes to stderr. The
course ships a subset of Noto Sans SC (every GB 2312 character, 1.5 MB, SIL Open Font License;
`llmlab/fonts/README.md` says how it was made). `use_chinese_font()` registers it and adds it to
matplotlib's font list after the usual fonts, so Latin text looks as before and every character
they lack (all the hanzi) is drawn from it:

    from llmlab.plots import use_chinese_font

    use_chinese_font()
    plt.title("词元 (token)")
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHINESE_FONT_FAMILY", "CHINESE_FONT_PATH", "use_chinese_font"]

#: The family name of the course's Chinese font (renamed so a full Noto Sans SC never stands in).
CHINESE_FONT_FAMILY = "Noto Sans SC LLM Lab"
#: The font file, inside the package.
CHINESE_FONT_PATH = Path(__file__).resolve().parent / "fonts" / "NotoSansSC-LLMLab-Regular.otf"


def use_chinese_font() -> str:
    """Register the course's Chinese font with matplotlib and make it the fallback of every text.

    `rcParams["font.family"]` keeps its fonts first and gets this font appended, so matplotlib
    (3.6 or newer) draws each character with the first font in the list that has it. Calling it
    again changes nothing. Returns the font's family name.

    The subset has one weight (regular). It is registered for every weight too, so bold text
    draws its hanzi in the regular weight instead of logging "Failed to find font weight bold".
    """
    import dataclasses

    import matplotlib as mpl
    from matplotlib import font_manager

    manager = font_manager.fontManager
    if not any(Path(f.fname) == CHINESE_FONT_PATH for f in manager.ttflist):
        manager.addfont(str(CHINESE_FONT_PATH))
        regular = next(f for f in manager.ttflist if Path(f.fname) == CHINESE_FONT_PATH)
        manager.ttflist += [dataclasses.replace(regular, weight=weight)
                            for weight in range(100, 1000, 100) if weight != regular.weight]
        manager._findfont_cached.cache_clear()
    families = list(mpl.rcParams["font.family"])
    if CHINESE_FONT_FAMILY not in families:
        mpl.rcParams["font.family"] = [*families, CHINESE_FONT_FAMILY]
    return CHINESE_FONT_FAMILY
