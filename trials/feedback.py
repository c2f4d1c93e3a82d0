"""Track-worker feedback: a survey CSV, summarised per supplier and question.

    supplier,respondent,week,question,score,comment
    acme,TW01,2,comfort,4,Light enough to forget about once it is clipped on

Scores are 1 (poor) to 5 (good). A row that cannot be read is reported by line
number and left out; it never stops the report.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("supplier", "respondent", "question", "score")


@dataclass(frozen=True)
class QuestionSummary:
    question: str
    responses: int
    mean_score: float
    low: int  # scores of 1 or 2


@dataclass
class Feedback:
    by_supplier: dict[str, list[QuestionSummary]] = field(default_factory=dict)
    comments: dict[str, list[str]] = field(default_factory=dict)
    respondents: int = 0
    problems: list[str] = field(default_factory=list)


def read_feedback(path: Path | None, suppliers: list[str]) -> Feedback | None:
    if path is None:
        return None
    out = Feedback()
    scores: dict[tuple[str, str], list[int]] = {}
    people = set()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            out.problems.append(f"{path.name}: no column(s) {', '.join(missing)}; survey ignored")
            return out
        for line, row in enumerate(reader, start=2):
            supplier = (row.get("supplier") or "").strip()
            if supplier not in suppliers:
                out.problems.append(f"{path.name} line {line}: unknown supplier {supplier!r}")
                continue
            try:
                score = int(row["score"])
                if not 1 <= score <= 5:
                    raise ValueError
            except (TypeError, ValueError):
                out.problems.append(f"{path.name} line {line}: score must be 1 to 5")
                continue
            question = (row.get("question") or "").strip() or "general"
            scores.setdefault((supplier, question), []).append(score)
            people.add(row.get("respondent"))
            comment = (row.get("comment") or "").strip()
            if comment:
                out.comments.setdefault(supplier, []).append(
                    f"{comment} ({row.get('respondent')}, week {row.get('week') or '?'})"
                )
    for (supplier, question), values in sorted(scores.items()):
        out.by_supplier.setdefault(supplier, []).append(
            QuestionSummary(question, len(values), sum(values) / len(values),
                            sum(v <= 2 for v in values))
        )  # fmt: skip
    out.respondents = len(people)
    return out
