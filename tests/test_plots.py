"""llmlab.plots: Chinese text in plots is drawn with the course's font, never as missing glyphs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from fontTools.ttLib import TTFont

from llmlab import PROJECT_ROOT
from llmlab.plots import CHINESE_FONT_FAMILY, CHINESE_FONT_PATH

TEXT = "词元 (token) 今天我很开心：大语言模型"

RENDER = f"""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from llmlab.plots import use_chinese_font

use_chinese_font()
use_chinese_font()  # a second call changes nothing
fig, ax = plt.subplots()
ax.set_title({TEXT!r})
ax.set_xlabel("下一个词 (next word)", weight="bold")
ax.set_ylabel("概率 (probability)", style="italic")
ax.bar(["开心", "累"], [0.6, 0.4])
fig.savefig(r"OUT", dpi=50)
chain = font_manager.fontManager._find_fonts_by_props(
    font_manager.FontProperties(family=matplotlib.rcParams["font.family"]))
drawn_by = set()
for ch in {TEXT!r}:
    if ch.isspace():
        continue
    drawn_by.add(next(p for p in chain if FT2Font(p).get_char_index(ord(ch))))
import json
print(json.dumps({{"family": list(matplotlib.rcParams["font.family"]), "chain": chain,
                  "drawn_by": sorted(drawn_by)}}))
"""


def test_chinese_renders_with_the_registered_font_and_no_warning(tmp_path):
    # A fresh matplotlib config folder: no font cache from an earlier run can help.
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    out = tmp_path / "zh.png"
    proc = subprocess.run([sys.executable, "-c", RENDER.replace("OUT", str(out))],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"rendering Chinese wrote to stderr: {proc.stderr}"
    result = json.loads(proc.stdout)
    assert result["family"] == ["sans-serif", CHINESE_FONT_FAMILY]
    assert Path(result["chain"][0]) != CHINESE_FONT_PATH, "Latin text keeps the default font"
    hanzi_fonts = {Path(p) for p in result["drawn_by"]} - {Path(result["chain"][0])}
    assert hanzi_fonts == {CHINESE_FONT_PATH}, "every hanzi is drawn from the course's font"
    assert out.stat().st_size > 0


def test_the_font_covers_every_hanzi_in_the_lectures():
    cmap = TTFont(CHINESE_FONT_PATH).getBestCmap()
    missing = set()
    for notebook in sorted((PROJECT_ROOT / "course").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            missing |= {ch for ch in "".join(cell["source"])
                        if "\u4e00" <= ch <= "\u9fff" and ord(ch) not in cmap}
    assert not missing, ("hanzi missing from the course's font (rebuild it with "
                         f"llmlab/fonts/build_subset.py): {''.join(sorted(missing))}")


def test_the_font_ships_with_its_licence():
    licence = (CHINESE_FONT_PATH.parent / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL Open Font License" in licence
    names = {r.nameID: r.toUnicode() for r in TTFont(CHINESE_FONT_PATH)["name"].names
             if r.platformID == 3}
    assert names[1] == CHINESE_FONT_FAMILY and "Open Font License" in names[13]
    assert CHINESE_FONT_PATH.stat().st_size < 3_000_000, "the subset stays small"
