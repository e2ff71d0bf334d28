"""A self-contained HTML report of an eval run: the metrics, two plots, and every question's verdict.

Plots are drawn with matplotlib as inline SVG, so the file opens anywhere with no network and no
scripts; every answer and passage is escaped text.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from matplotlib.figure import Figure

from rag.evaluation.question_set import EvalReport, QuestionResult

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#1f2937}
h1{margin-bottom:.2rem}.sub{color:#6b7280;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border-bottom:1px solid #e5e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f9fafb}.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0;flex:1 1 480px}
.v-correct,.v-abstained-right{color:#047857}.v-wrong,.v-answered-should-abstain{color:#b91c1c}
.v-abstained-should-answer{color:#b45309}.cite-bad{color:#b91c1c}.cite-ok{color:#047857}
.small{font-size:.85em;color:#6b7280}
"""


def write_html(report: EvalReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")


def render_html(report: EvalReport) -> str:
    m = report.metrics
    metric_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='num'>{html.escape(_shown(value))}</td></tr>"
        for name, value in m.items()
    )
    settings_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in report.settings.items()
    )
    question_rows = "".join(_question_row(r) for r in report.results)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Eval: {html.escape(report.name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Eval: {html.escape(report.name)}</h1>"
        f"<p class='sub'>{m['n']} questions, {report.seconds:.0f} s</p>"
        f"<div class='plots'><figure>{_category_plot(report)}</figure><figure>{_latency_plot(report)}</figure></div>"
        "<h2>Metrics</h2><table><tr><th>metric</th><th class='num'>value</th></tr>"
        f"{metric_rows}</table>"
        f"<h2>Configuration</h2><table>{settings_rows}</table>"
        "<h2>Questions</h2><table><tr><th>id</th><th>question</th><th>answer</th><th>citations</th>"
        f"<th>verdict</th><th class='num'>total</th></tr>{question_rows}</table></body></html>"
    )


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def _question_row(r: QuestionResult) -> str:
    citations = "".join(
        f"<div class='{'cite-ok' if c.precise else 'cite-bad'}'>[{c.n}] {html.escape(Path(c.source).name)}"
        f"{'' if c.from_gold else ' (not a gold document)'}{'' if c.supports else ' (does not support)'}</div>"
        for c in r.citations
    )
    retrieved = html.escape(", ".join(dict.fromkeys(r.retrieved)))
    verdict = r.verdict + (f", by: {r.abstained_by}" if r.abstained_by else "")
    draft = f"<div class='small'>model draft: {html.escape(r.draft)}</div>" if r.draft and r.draft != r.answer else ""
    css = "v-" + r.verdict.replace(" (", "-").replace(")", "").replace(" ", "-")
    return (
        f"<tr><td>{html.escape(r.id)}<div class='small'>{html.escape(r.category)}"
        f"{' · ' + html.escape(r.trap) if r.trap else ''}</div></td>"
        f"<td>{html.escape(r.question)}</td>"
        f"<td>{html.escape(r.answer)}<div class='small'>retrieved: {retrieved}</div>{draft}</td>"
        f"<td>{citations or '<span class=small>none</span>'}</td>"
        f"<td class='{css}'>{html.escape(verdict)}</td>"
        f"<td class='num'>{r.total_ms / 1000:.1f} s</td></tr>"
    )


def _svg(figure: Figure) -> str:
    """The figure as an inline <svg> element (matplotlib's OO API needs no GUI backend)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _category_plot(report: EvalReport) -> str:
    names = list(report.by_category)
    accuracy = [report.by_category[c]["accuracy"] for c in names]
    figure = Figure(figsize=(6, 3.2))
    axes = figure.subplots()
    bars = axes.barh(names, accuracy, color="#6366f1")
    labels = [f"{a:.0%} of {report.by_category[c]['n']}" for c, a in zip(names, accuracy, strict=True)]
    axes.bar_label(bars, labels=labels)
    axes.set_xlim(0, 1.15)
    axes.invert_yaxis()
    axes.set_title("Accuracy per category (unanswerable: abstained)")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def _latency_plot(report: EvalReport) -> str:
    totals = [r.total_ms / 1000 for r in report.results]
    first = [r.first_token_ms / 1000 for r in report.results if r.first_token_ms is not None]
    figure = Figure(figsize=(6, 3.2))
    axes = figure.subplots()
    axes.hist([first, totals], bins=15, label=["first token", "whole answer"], color=["#a5b4fc", "#4338ca"])
    axes.set_xlabel("seconds")
    axes.set_ylabel("questions")
    axes.set_title("Latency")
    axes.legend()
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)
