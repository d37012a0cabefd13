"""Grade results: GitHub Classroom JSON, the readable summary, and the class CSV row."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Outcome of grading one submission (the `status` column of grades.csv).
STATES = ("graded", "timeout", "crashed", "invalid", "tampered", "error")


@dataclass
class TestResult:
    name: str  # the test cell's nbgrader grade_id
    score: float
    max_score: float
    message: str = ""

    @property
    def status(self) -> str:
        return "pass" if self.score == self.max_score else "fail"


@dataclass
class GradeResult:
    notebook: str
    assignment: str
    state: str
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0
    cell_seconds: float = 0.0  # of `seconds`, the time the notebook's own cells took
    isolation: str = ""
    hidden_points: float = 0.0  # points of hidden tests not run here (`check`)

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    def classroom(self) -> dict:
        """GitHub Classroom's shape: status pass iff full marks, error iff not gradable."""
        if self.state in ("invalid", "error"):
            status = "error"
        else:
            status = "pass" if self.tests and self.score == self.max_score else "fail"
        return {
            "version": 1,
            "status": status,
            "max_score": number(self.max_score),
            "tests": [{"name": t.name, "status": t.status, "score": number(t.score),
                       "max_score": number(t.max_score), "message": t.message}
                      for t in self.tests],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.classroom(), indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")

    def record(self) -> dict:
        """Everything, for grade-class (status, flags, reason as well as the tests)."""
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict) -> GradeResult:
        tests = [TestResult(**t) for t in data.pop("tests", [])]
        return cls(**data, tests=tests)

    def summary(self) -> str:
        width = max([len(t.name) for t in self.tests] + [10])
        lines = [f"{self.notebook} — assignment {self.assignment}"]
        for t in self.tests:
            mark = "PASS" if t.status == "pass" else "FAIL"
            line = f"  {mark}  {t.name:<{width}}  {_fmt(t.score):>5} / {_fmt(t.max_score)}"
            lines.append(line + (f"   {t.message}" if t.message else ""))
        lines.append(f"Total: {_fmt(self.score)} / {_fmt(self.max_score)}   status: {self.state}"
                     + (f" ({self.reason})" if self.reason else ""))
        if self.hidden_points:
            lines.append(f"Hidden tests worth {_fmt(self.hidden_points)} more points run when "
                         "your notebook is graded.")
        if self.flags:
            lines.append("Flags: " + ", ".join(self.flags))
        if self.isolation:
            lines.append("Sandbox: " + self.isolation)
        return "\n".join(lines)


def number(x: float) -> int | float:
    """A score as JSON/CSV shows it: 3 rather than 3.0."""
    return int(x) if float(x).is_integer() else round(x, 4)


def _fmt(x: float) -> str:
    return str(number(x))
