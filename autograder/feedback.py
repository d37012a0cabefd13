"""Feedback HTML a student can read offline (`nbgrader generate_feedback` in a grade-class folder).

nbgrader's own feedback page loads MathJax from a CDN, leaves tables unstyled and calls every graded
cell "Test cell". The course folder's config (`course.NBGRADER_CONFIG`) swaps in:

- `FeedbackSummary`, a preprocessor that runs after nbgrader's `GetGrades` and `ClearHiddenTests`:
  it lists every graded cell with its exercise, grade_id, score, points and the grader's reason
  (stored in the autograded notebook's cell metadata `autograder.message` by `grading`), totals the
  points that came from hidden tests, and empties hidden test cells entirely (code and outputs);
- `FeedbackExporter`, nbconvert's HTML exporter with maths rendered here, as inline SVG made by
  matplotlib's mathtext (no script, no network), and the `llmlab_feedback` template next to this
  file: one self-contained page with its own stylesheet.
"""

from __future__ import annotations

import base64
import html
import io
import re
from functools import lru_cache

from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from autograder.notebooks import grade_id, is_answer_cell, is_hidden_test, is_test_cell

MATH_POINTS = 12.0  # font size maths is drawn at; the page scales it to the text around it
TEST_SUFFIXES = ("_visible", "_hidden")


# -- maths ------------------------------------------------------------------------------------
#: What mathtext lacks, rewritten to what it has (sized delimiters are dropped).
_TEX_REWRITES = [
    (re.compile(r"\\(?:big|Big|bigg|Bigg)[lrm]?(?![a-zA-Z])"), ""),
    (re.compile(r"\\[lr]Vert(?![a-zA-Z])"), r"\\Vert "),
    (re.compile(r"\\[lr]vert(?![a-zA-Z])"), "|"),
    (re.compile(r"\\le(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\ge(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\frac\s*([A-Za-z0-9])\s*([A-Za-z0-9])"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\(math[a-z]+|boldsymbol)\s+([A-Za-z0-9])"), r"\\\1{\2}"),
]


def _mathtext_source(tex: str) -> str:
    tex = " ".join(tex.split())
    for pattern, replacement in _TEX_REWRITES:
        tex = pattern.sub(replacement, tex)
    return f"${tex}$"


@lru_cache(maxsize=4096)
def math_html(tex: str, display: bool = False) -> str:
    """`tex` as an inline SVG image (its TeX as the alt text), or as code when mathtext cannot
    draw it (e.g. `\\begin{cases}`)."""
    kind = "math-display" if display else "math"
    alt = html.escape(" ".join(tex.split()), quote=True)
    try:
        svg, height, depth = _draw(_mathtext_source(tex))
    except Exception:  # mathtext raises pyparsing and value errors for TeX it does not know
        return f'<code class="{kind} tex" title="TeX">{alt}</code>'
    data = base64.b64encode(svg).decode("ascii")
    style = (f"height:{height / MATH_POINTS:.3f}em;"
             f"vertical-align:{-depth / MATH_POINTS:.3f}em")
    return (f'<img class="{kind}" alt="{alt}" title="{alt}" style="{style}" '
            f'src="data:image/svg+xml;base64,{data}">')


def _draw(source: str) -> tuple[bytes, float, float]:
    """SVG bytes (glyphs as paths, deterministic ids, no date) with height and depth in points."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    with matplotlib.rc_context({"mathtext.fontset": "cm", "svg.fonttype": "path",
                                "svg.hashsalt": "llmlab-feedback"}):
        prop = FontProperties(size=MATH_POINTS)
        width, height, depth, *_ = MathTextParser("path").parse(source, dpi=72, prop=prop)
        fig = Figure(figsize=(width / 72, height / 72))
        fig.text(0, depth / height, source, fontproperties=prop)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", dpi=72, transparent=True, metadata={"Date": None})
    # the DTD reference and matplotlib's RDF metadata are of no use to a browser
    svg = re.sub(rb"<!DOCTYPE[^>]*>\s*|\s*<metadata>.*?</metadata>", b"", buffer.getvalue(),
                 flags=re.S)
    return svg, height, depth


class MathRenderer(IPythonRenderer):
    """nbconvert's markdown renderer, with maths drawn here instead of left for MathJax."""

    def inline_math(self, body: str) -> str:
        return math_html(body)

    def block_math(self, body: str) -> str:
        return math_html(body, display=True)

    def latex_environment(self, name: str, body: str) -> str:
        return math_html(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)


class FeedbackExporter(HTMLExporter):
    """HTML export for feedback: maths without MathJax (see the module docstring)."""

    @pass_context
    def markdown2html(self, context, source: str) -> str:
        cell = context.get("cell", {})
        renderer = MathRenderer(
            escape=False, attachments=cell.get("attachments", {}),
            embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text,
            exclude_anchor_links=self.exclude_anchor_links, **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)

    def default_filters(self):
        yield from super().default_filters()
        yield ("tex2html", lambda tex: math_html(str(tex).strip().strip("$"), display=True))


# -- the summary --------------------------------------------------------------------------------
def exercise_of(gid: str) -> str:
    """`mse_gradient_hidden` -> `mse_gradient`."""
    for suffix in TEST_SUFFIXES:
        if gid.endswith(suffix):
            return gid[: -len(suffix)]
    return gid


def exercise_title(task_source: str, exercise: str) -> str:
    """HTML for an exercise's name: its task cell's heading without the points, else the name."""
    first = next((line for line in task_source.splitlines() if line.strip()), "")
    if not first.lstrip().startswith("#"):
        return f"<code>{html.escape(exercise)}</code>"
    title = re.sub(r"\s*\([^()]*\bpoints?\b[^()]*\)\s*$", "", first.lstrip("#").strip())
    parts = html.escape(title).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0")


def _reason(cell) -> str:
    message = cell.metadata.get("autograder", {}).get("message", "")
    if message:
        return str(message)
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        return f"{errors[-1].get('ename', '')}: {errors[-1].get('evalue', '')}".strip(": ")
    return ""


class FeedbackSummary(Preprocessor):
    """Collect the graded cells into `resources["autograder"]` and empty hidden test cells."""

    enabled = Bool(True)  # nbgrader registers preprocessors without enabling them

    def preprocess(self, nb, resources):
        tasks = {g.removesuffix("_task"): c.source for c in nb.cells
                 if (g := grade_id(c) or "").endswith("_task")}
        tests, by_id = [], {}
        for cell in nb.cells:
            gid = grade_id(cell)
            if is_answer_cell(cell) and gid:
                exercise = gid.removesuffix("_answer")
                by_id[gid] = {"exercise": exercise_title(tasks.get(exercise, ""), exercise)}
            if not (is_test_cell(cell) and gid):
                continue
            meta = cell.metadata.nbgrader
            score, points = float(meta.get("score") or 0), float(meta.get("points") or 0)
            exercise = exercise_of(gid)
            test = {"grade_id": gid, "exercise": exercise_title(tasks.get(exercise, ""), exercise),
                    "hidden": is_hidden_test(cell), "score": number(score),
                    "points": number(points), "passed": score >= points,
                    "reason": "" if score >= points else _reason(cell),
                    "score_value": score, "points_value": points}
            if test["hidden"]:  # nothing of a hidden test reaches the page but its result
                cell.source, cell.outputs = "", []
            tests.append(test)
            by_id[gid] = test
        hidden = [t for t in tests if t["hidden"]]
        resources["autograder"] = {
            "tests": tests, "by_id": by_id,
            "score": number(sum(t["score_value"] for t in tests)),
            "max_score": number(sum(t["points_value"] for t in tests)),
            "hidden_score": number(sum(t["score_value"] for t in hidden)),
            "hidden_points": number(sum(t["points_value"] for t in hidden)),
            "visible_score": number(sum(t["score_value"] for t in tests if not t["hidden"])),
            "visible_points": number(sum(t["points_value"] for t in tests if not t["hidden"])),
        }
        return nb, resources
