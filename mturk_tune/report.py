"""A self-contained HTML report of a workspace: what the crowd said, what it was worth, what the model became.

One file, no network: the plots are inline SVG drawn here (no script, no stylesheet or font from
elsewhere), so the page opens in any browser, offline, and can be mailed or archived as it is. Every
text that came from a model, a prompt, a worker or a path is HTML-escaped.

Sections: per-round summary; true and rated reward per round; cost per round; agreement per batch
(Krippendorff's alpha over all ratings and over the ratings kept after review); worker quality (gold
accuracy against agreement with the others); score distributions per round; sample texts before and
after tuning (from each checkpoint's run record) and generations of the first and last round.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .store import Store
from .workspace import Workspace

PALETTE = ("#3b6ea8", "#d9822b", "#3a9a5b", "#b8485a", "#7d5ba6", "#8c6d3f", "#4a9fb0", "#777777")
SAMPLE_TEXTS = 6


def write_report(ws: Workspace, out_path: Path | None = None) -> Path:
    """Write the report of `ws` to `out_path` (default: report.html in the workspace) and return its path."""
    out = Path(out_path) if out_path is not None else ws.root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(ws), encoding="utf-8")
    return out


def render_report(ws: Workspace) -> str:
    store = ws.store
    from .loop import META_PREFERENCE, round_metrics

    metrics = round_metrics(store)
    preference_spec = store.get_meta(META_PREFERENCE)
    sections = [
        _header(ws, store, preference_spec),
        _summary_table(metrics),
        _reward_plot(metrics),
        _cost_plot(metrics),
        _agreement_section(store),
        _worker_section(store),
        _score_section(store),
        _samples_section(store, preference_spec),
        _how_to_read(),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>mturk-tune report: {escape(ws.root.name)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 62rem; margin: 1.5rem auto;
       padding: 0 1rem; color: #1d2430; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #d5dbe3; }
table { border-collapse: collapse; font-size: .88rem; margin: .6rem 0; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e3e7ed; text-align: right; vertical-align: top; }
th { background: #f2f5f9; } td.text, th.text { text-align: left; overflow-wrap: anywhere; }
.muted { color: #5a6472; font-size: .9rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: .5rem 0; } figcaption { font-size: .85rem; color: #5a6472; max-width: 36rem; }
svg text { font-family: inherit; font-size: 11px; fill: #1d2430; }
.sample { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 40rem; }
"""


# ---------------------------------------------------------------------------------------------- sections


def _header(ws: Workspace, store: Store, preference: str | None) -> str:
    counts = store.counts()
    checkpoints = store.checkpoints()
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = [
        ("workspace", str(ws.root)),
        ("rounds", str(len(counts))),
        ("base model", counts[0].model if counts else "-"),
        ("latest model", counts[-1].model if counts else "-"),
        ("checkpoints", str(len(checkpoints))),
        ("hidden preference", preference or "- (not a simulated loop)"),
        ("written", generated),
    ]
    rows = "".join(f"<tr><th class=\"text\">{escape(k)}</th><td class=\"text\">{escape(v)}</td></tr>" for k, v in facts)
    return f"<h1>mturk-tune report</h1>\n<table>{rows}</table>"


_SUMMARY_COLUMNS = [
    ("true_reward", "true reward", 3), ("rated_reward", "rated reward", 3), ("score_truth_corr", "score-truth r", 2),
    ("ratings", "ratings", 0), ("ratings_kept", "kept", 0), ("rejected_assignments", "rejected", 0),
    ("workers", "workers", 0), ("alpha", "alpha (all)", 2), ("alpha_kept", "alpha (kept)", 2), ("cost", "cost $", 2),
]


def _summary_table(metrics: list[dict]) -> str:
    if not metrics:
        return "<h2>Rounds</h2><p class=\"muted\">No round metrics yet: run 'mturk-tune loop'.</p>"
    columns = [c for c in _SUMMARY_COLUMNS if any(c[0] in m for m in metrics)]
    head = "<tr><th>round</th>" + "".join(f"<th>{escape(label)}</th>" for _, label, _ in columns) + "</tr>"
    rows = []
    for m in metrics:
        cells = "".join(f"<td>{_number(m.get(key), digits)}</td>" for key, _, digits in columns)
        rows.append(f"<tr><td>{m['round']}</td>{cells}</tr>")
    return ("<h2>Rounds</h2>\n<p class=\"muted\">True reward: the hidden preference's mean over the round's "
            "generations (round 0 is the base model; the last round, generated after the last tune, is evaluated "
            "only). Rated reward: the crowd's mean aggregated score, rescaled to 0-1.</p>\n"
            f"<table>{head}{''.join(rows)}</table>")


def _reward_plot(metrics: list[dict]) -> str:
    series = {}
    for key, label in (("true_reward", "true reward"), ("rated_reward", "rated reward (crowd)")):
        points = [(m["round"], m[key]) for m in metrics if key in m]
        if points:
            series[label] = points
    if not series:
        return ""
    svg = line_chart(series, x_label="round", y_label="reward (0-1)", y_range=(0.0, 1.0))
    return ("<h2>Reward per round</h2>\n" + _figure(svg, "Does the model get better by the crowd's hidden "
            "preference (true reward), and does the crowd see it (rated reward)?"))


def _cost_plot(metrics: list[dict]) -> str:
    rows = [m for m in metrics if "cost" in m]
    if not rows:
        return ""
    svg = bar_chart([f"round {m['round']}" for m in rows], {"cost $": [m["cost"] for m in rows]}, y_label="dollars")
    return "<h2>Cost per round</h2>\n" + _figure(
        svg, "What the round would cost on MTurk: reward and fee of every assignment not rejected, plus bonuses.")


def _agreement_section(store: Store) -> str:
    from .agreement import alpha_or_none

    ratings = store.ratings_frame()
    if ratings.empty:
        return ""
    items = store.items_frame()[["id", "batch_id"]].rename(columns={"id": "task"})
    ratings = ratings.merge(items, on="task")
    status = store.assignments_frame().set_index("assignment_id")["status"]
    ratings["kept"] = ratings["assignment_id"].map(status).ne("Rejected")
    batches, everything, kept = [], [], []
    rows = []
    for batch_id, group in ratings.groupby("batch_id", sort=False):
        all_alpha = alpha_or_none(group)
        kept_alpha = alpha_or_none(group[group["kept"]])
        batches.append(str(batch_id))
        everything.append(all_alpha)
        kept.append(kept_alpha)
        rows.append(f"<tr><td class=\"text\">{escape(str(batch_id))}</td><td>{len(group)}</td>"
                    f"<td>{group['worker'].nunique()}</td><td>{_number(all_alpha, 3)}</td><td>{_number(kept_alpha, 3)}</td></tr>")
    svg = bar_chart(batches, {"all ratings": everything, "kept after review": kept}, y_label="Krippendorff's alpha",
                    y_range=(min(0.0, *[v for v in everything + kept if v is not None and not math.isnan(v)]), 1.0))
    table = ("<table><tr><th class=\"text\">batch</th><th>ratings</th><th>workers</th><th>alpha (all)</th>"
             f"<th>alpha (kept)</th></tr>{''.join(rows)}</table>")
    return ("<h2>Agreement per batch</h2>\n" + _figure(
        svg, "Krippendorff's alpha (ordinal) of the ratings of each batch: 1 is perfect agreement, 0 is chance. "
             "Random clickers pull it down; review should lift the kept ratings back up.") + table)


def _worker_section(store: Store) -> str:
    from .quality import worker_signals
    from .reviewing import review_inputs

    ratings, assignments, gold = review_inputs(store)
    if ratings.empty:
        return ""
    try:
        signals = worker_signals(ratings, assignments, gold if len(gold) else None, gold_tolerance=_gold_tolerance(store))
    except Exception as exc:  # a report must still be written when one table cannot be computed
        return f"<h2>Worker quality</h2><p class=\"muted\">not available: {escape(str(exc))}</p>"
    statuses = assignments.groupby("worker")["status"].value_counts().unstack(fill_value=0)
    signals = signals.join(statuses, on="worker")
    for column in ("Approved", "Rejected", "Submitted"):
        if column not in signals:
            signals[column] = 0
    signals["rejected_share"] = signals["Rejected"] / signals["n_assignments"].where(signals["n_assignments"] > 0)
    x_key = "gold_accuracy" if signals["gold_accuracy"].notna().any() else "median_seconds_per_item"
    points = []
    for row in signals.itertuples(index=False):
        x, y = getattr(row, x_key), row.agreement
        if x is None or y is None or pd.isna(x) or pd.isna(y):
            continue
        color = PALETTE[3] if (row.rejected_share or 0) > 0.5 else PALETTE[0]
        points.append((float(x), float(y), color, f"{row.worker}: {row.n_assignments} assignments"))
    parts = ["<h2>Worker quality</h2>"]
    if points:
        x_label = "gold accuracy" if x_key == "gold_accuracy" else "median seconds per item"
        svg = scatter_plot(points, x_label=x_label, y_label="agreement with the others",
                           x_range=(0.0, 1.0) if x_key == "gold_accuracy" else None)
        parts.append(_figure(svg, "One dot per worker; red: most of the worker's assignments were rejected. "
                                  "Careful workers sit top right; random clickers near chance on both axes."))
    columns = [("worker", "worker", None), ("n_assignments", "assignments", 0), ("Approved", "approved", 0),
               ("Rejected", "rejected", 0), ("gold_n", "gold answers", 0), ("gold_accuracy", "gold accuracy", 2),
               ("median_seconds_per_item", "s per item", 1), ("straightline_share", "straight-lined", 2),
               ("agreement", "agreement", 2)]
    text_class = ' class="text"'
    head = "".join(f"<th{text_class if d is None else ''}>{escape(label)}</th>" for _, label, d in columns)
    rows = []
    for row in signals.sort_values("n_assignments", ascending=False).itertuples(index=False):
        cells = []
        for key, _, digits in columns:
            value = getattr(row, key)
            cells.append(f"<td class=\"text\">{escape(str(value))}</td>" if digits is None else f"<td>{_number(value, digits)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    return "\n".join(parts)


def _score_section(store: Store) -> str:
    scores = store.scores_frame()
    scores = scores[scores["kind"] == "generated"] if len(scores) else scores
    if scores.empty:
        return ""
    method = scores["method"].value_counts().index[0]
    scores = scores[scores["method"] == method]
    edges = [1.0 + 0.5 * i for i in range(9)]  # 1.0, 1.5, ..., 5.0
    labels = [f"{a:.1f}-{b:.1f}" for a, b in zip(edges, edges[1:])]
    series = {}
    for round_, group in scores.groupby("round"):
        counts = pd.cut(group["label"], bins=edges, include_lowest=True, right=True).value_counts(sort=False)
        total = max(len(group), 1)
        series[f"round {round_}"] = [float(c) / total for c in counts.tolist()]
    svg = bar_chart(labels, series, y_label="share of items", y_range=(0.0, None))
    return "<h2>Score distributions</h2>\n" + _figure(
        svg, f"Aggregated scores ({escape(method)}) of each round's generated items, as shares of the round's items.")


def _samples_section(store: Store, preference_spec: str | None) -> str:
    parts = ["<h2>Sample texts</h2>"]
    for checkpoint in store.checkpoints():
        record = json.loads(checkpoint["record"])
        samples = record.get("samples") or []
        if not samples:
            continue
        rows = "".join(
            f"<tr><td class=\"text sample\">{escape(s.get('prompt', ''))}</td><td class=\"text sample\">"
            f"{escape(s.get('before', ''))}</td><td class=\"text sample\">{escape(s.get('after', ''))}</td></tr>"
            for s in samples)
        parts.append(f"<h3>Round {int(checkpoint['round'])} tune: greedy continuations before and after</h3>"
                     f"<table><tr><th class=\"text\">prompt</th><th class=\"text\">before</th>"
                     f"<th class=\"text\">after</th></tr>{rows}</table>")
    preference = _load_preference_quietly(preference_spec)
    rounds = [c.round for c in store.counts() if c.items]
    if rounds:
        first, last = rounds[0], rounds[-1]
        for round_ in dict.fromkeys((first, last)):
            items = store.items_frame(round_=round_)
            items = items[items["kind"] == "generated"].drop_duplicates("prompt_id").head(SAMPLE_TEXTS)
            header = "<th class=\"text\">prompt</th><th class=\"text\">generated text</th>"
            header += "<th>true quality</th>" if preference else ""
            rows = []
            for row in items.itertuples(index=False):
                quality = f"<td>{_number(preference(row.text), 2)}</td>" if preference else ""
                rows.append(f"<tr><td class=\"text sample\">{escape(row.prompt)}</td>"
                            f"<td class=\"text sample\">{escape(row.text)}</td>{quality}</tr>")
            parts.append(f"<h3>Generations of round {round_} (model {escape(str(store.round_model(round_)))})</h3>"
                         f"<table><tr>{header}</tr>{''.join(rows)}</table>")
    return "\n".join(parts) if len(parts) > 1 else ""


def _how_to_read() -> str:
    return """<h2>How to read this report</h2>
<ul>
<li><b>Reward per round</b>: the true reward should rise from round to round if the ratings carry the
preference into the model. Rated reward following it means the crowd notices; a rated reward that rises
while the true reward does not means the model learned what the raters reward, not what you wanted.</li>
<li><b>Agreement per batch</b>: alpha well below the clean crowd's level points at careless or random workers;
the kept ratings' alpha shows what review left for aggregation.</li>
<li><b>Worker quality</b>: workers far from the top-right cluster are the ones review rejects or blocks.</li>
<li><b>Score distributions</b>: mass moving to higher scores round after round is the model improving in the
crowd's eyes; everything piled on one value means the scale no longer separates the texts.</li>
<li><b>Cost per round</b>: rejected assignments are not paid, so good review also saves money.</li>
</ul>"""


# ---------------------------------------------------------------------------------------------- helpers


def _number(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "-"
    return f"{float(value):.{digits}f}"


def _gold_tolerance(store: Store) -> float:
    """The workspace's [quality] gold_tolerance, so the worker table judges gold answers as review did."""
    try:
        from .config import load_config
        from .workspace import CONFIG_FILE

        return float(dict(load_config(store.path.parent / CONFIG_FILE).quality).get("gold_tolerance", 0.0))
    except Exception:
        return 0.0


def _load_preference_quietly(spec: str | None):
    if not spec:
        return None
    from .errors import MturkTuneError
    from .preferences import load_preference

    try:
        return load_preference(spec)
    except MturkTuneError:  # a user's module that is not importable here: show the texts without it
        return None


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


# ---------------------------------------------------------------------------------------------- inline SVG plots


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


class _Frame:
    """A plot area with axes: maps data coordinates to SVG pixels."""

    def __init__(self, width: int, height: int, y_ticks: Sequence[float], x_range: tuple[float, float]):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 52, 14, 14, 44
        self.y_low, self.y_high = y_ticks[0], y_ticks[-1]
        self.x_low, self.x_high = x_range
        self.y_ticks = y_ticks

    def x(self, value: float) -> float:
        span = (self.x_high - self.x_low) or 1.0
        return self.left + (value - self.x_low) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y_high - self.y_low) or 1.0
        return self.height - self.bottom - (value - self.y_low) / span * (self.height - self.top - self.bottom)

    def axes(self, x_label: str, y_label: str) -> list[str]:
        out = []
        for tick in self.y_ticks:
            y = self.y(tick)
            out.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ed"/>')
            out.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(tick)}</text>')
        base = self.height - self.bottom
        out.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{base}" y2="{base}" stroke="#5a6472"/>')
        out.append(f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" y2="{base}" stroke="#5a6472"/>')
        out.append(f'<text x="{(self.left + self.width - self.right) / 2:.1f}" y="{self.height - 6}" '
                   f'text-anchor="middle">{escape(x_label)}</text>')
        out.append(f'<text x="12" y="{(self.top + base) / 2:.1f}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {(self.top + base) / 2:.1f})">{escape(y_label)}</text>')
        return out


def _tick_label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-9 else "0"


def _svg(width: int, height: int, parts: Iterable[str], label: str) -> str:
    return (f'<svg role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">' + "".join(parts) + "</svg>")


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        yy = y + 14 * i
        out.append(f'<rect x="{x:.1f}" y="{yy - 8:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{yy + 1:.1f}">{escape(name)}</text>')
    return out


def _y_ticks(values: Iterable[float | None], y_range: tuple[float | None, float | None] | None) -> list[float]:
    finite = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    low = y_range[0] if y_range and y_range[0] is not None else (min(finite) if finite else 0.0)
    high = y_range[1] if y_range and y_range[1] is not None else (max(finite) if finite else 1.0)
    if finite:
        low, high = min(low, min(finite)), max(high, max(finite))
    return nice_ticks(low, high)


def line_chart(series: dict[str, list[tuple[float, float]]], *, x_label: str, y_label: str,
               y_range: tuple[float | None, float | None] | None = None, width: int = 560, height: int = 300) -> str:
    """Lines with dots, one per named series of (x, y) points; integer x values are labelled."""
    xs = [x for points in series.values() for x, _ in points]
    ticks = _y_ticks((y for points in series.values() for _, y in points), y_range)
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_low == x_high:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    frame = _Frame(width, height, ticks, (x_low, x_high))
    parts = frame.axes(x_label, y_label)
    for x in sorted(set(xs)):
        if float(x).is_integer():
            parts.append(f'<text x="{frame.x(x):.1f}" y="{height - frame.bottom + 15}" text-anchor="middle">{int(x)}</text>')
    for i, (name, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in sorted(points))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3.5" fill="{color}">'
                         f"<title>{escape(name)}: {y:.3f} at {x:g}</title></circle>")
    parts += _legend(list(series), frame.left + 10, frame.top + 10)
    return _svg(width, height, parts, f"{y_label} by {x_label}")


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[float | None]], *, y_label: str,
              y_range: tuple[float | None, float | None] | None = None, width: int | None = None, height: int = 300) -> str:
    """Grouped bars: one group per category, one bar per named series (None draws nothing)."""
    n_series = max(len(series), 1)
    width = width or max(420, min(940, 70 + len(categories) * (18 * n_series + 16)))
    ticks = _y_ticks((v for values in series.values() for v in values), y_range or (0.0, None))
    frame = _Frame(width, height, ticks, (0.0, float(max(len(categories), 1))))
    parts = frame.axes("", y_label)
    slot = (frame.x(1.0) - frame.x(0.0))
    bar = slot * 0.8 / n_series
    zero = frame.y(max(ticks[0], 0.0))
    for c, category in enumerate(categories):
        left = frame.x(float(c)) + slot * 0.1
        for s, (name, values) in enumerate(series.items()):
            value = values[c] if c < len(values) else None
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            top = frame.y(value)
            y, h = (top, zero - top) if value >= 0 else (zero, top - zero)
            parts.append(f'<rect x="{left + s * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{max(h, 0.5):.1f}" '
                         f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} {escape(category)}: {value:.3f}'
                         "</title></rect>")
        label = category if len(category) <= 16 else category[:15] + "\u2026"
        parts.append(f'<text x="{left + slot * 0.4:.1f}" y="{height - frame.bottom + 15}" text-anchor="middle">'
                     f"{escape(label)}</text>")
    if len(series) > 1:
        parts += _legend(list(series), width - frame.right - 150, frame.top + 10)
    return _svg(width, height, parts, y_label)


def scatter_plot(points: Sequence[tuple[float, float, str, str]], *, x_label: str, y_label: str,
                 x_range: tuple[float, float] | None = None, width: int = 560, height: int = 320) -> str:
    """Dots at (x, y) with a color and a hover title each."""
    xs = [p[0] for p in points]
    ticks = _y_ticks((p[1] for p in points), (min(0.0, *(p[1] for p in points)), 1.0))
    x_ticks = nice_ticks(*(x_range or (min(xs), max(xs))))
    frame = _Frame(width, height, ticks, (x_ticks[0], x_ticks[-1]))
    parts = frame.axes(x_label, y_label)
    for tick in x_ticks:
        parts.append(f'<text x="{frame.x(tick):.1f}" y="{height - frame.bottom + 15}" text-anchor="middle">'
                     f"{_tick_label(tick)}</text>")
    for x, y, color, title in points:
        parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="4.5" fill="{color}" fill-opacity="0.75">'
                     f"<title>{escape(title)}</title></circle>")
    return _svg(width, height, parts, f"{y_label} against {x_label}")
