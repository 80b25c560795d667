"""The flow map: which department produces which event types, and which services consume them.

Three columns — producing departments, event types, consuming services — joined by edges. The
types and their owners come from the contract registry; who consumes what from the services'
code (:func:`bus.specs.catalogue.handled`) and from the consumer groups actually present in
Redis (a :class:`bus.admin.snapshots.BusSnapshot`). An edge is *live* when the consuming
service's group exists on the type's stream; a group present in Redis that the code does not
know consumes every type of its stream, and is drawn so.

The SVG is written by hand (no graphviz): stable ordering, no timestamp, readable for a few
dozen types. :func:`render_svg` is what the web dashboard embeds; :func:`render_html` wraps it
in a page with a title, the generation time and a table of the same edges (for assessments and
screen readers); :meth:`FlowMap.to_json` is the machine-readable form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from bus.admin.snapshots import BusSnapshot
from bus.contracts import Registry, default_registry

__all__ = [
    "Edge",
    "FlowMap",
    "ServiceNode",
    "TypeNode",
    "build",
    "live_groups",
    "render_html",
    "render_svg",
]

# Tableau 10: distinct, colour-blind friendly enough, printable.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#c9a227",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
_FONT = "Inter, 'Segoe UI', 'Helvetica Neue', Helvetica, Arial, sans-serif"
_INK = "#1f2933"
_MUTED = "#7b8794"
_LINE = "#cbd2d9"
_LIVE = "#2f9e44"


@dataclass(frozen=True, slots=True)
class TypeNode:
    event_type: str
    owner: str
    stream: str
    classification: str


@dataclass(frozen=True, slots=True)
class ServiceNode:
    name: str
    live: bool  # its consumer group exists on at least one stream
    in_code: bool  # a service in the code declares handlers under this name


@dataclass(frozen=True, slots=True)
class Edge:
    event_type: str
    service: str
    declared: bool  # the service's code handles this type
    live: bool  # the service's group exists on the type's stream


@dataclass(frozen=True, slots=True)
class FlowMap:
    departments: tuple[str, ...]
    types: tuple[TypeNode, ...]
    services: tuple[ServiceNode, ...]
    edges: tuple[Edge, ...]
    live_known: bool  # False: Redis was not consulted, so nothing is known to be live
    source: str = ""  # where the live groups came from, e.g. "Redis 7.0.15"

    def consumers_of(self, event_type: str) -> list[Edge]:
        return [e for e in self.edges if e.event_type == event_type]

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape of ``simpul map --format json``."""
        return {
            "live_known": self.live_known,
            "source": self.source,
            "departments": list(self.departments),
            "types": [
                {
                    "type": t.event_type,
                    "owner": t.owner,
                    "stream": t.stream,
                    "classification": t.classification,
                    "consumers": [e.service for e in self.consumers_of(t.event_type)],
                }
                for t in self.types
            ],
            "services": [
                {"name": s.name, "live": s.live, "in_code": s.in_code} for s in self.services
            ],
            "edges": [
                {"type": e.event_type, "service": e.service, "declared": e.declared, "live": e.live}
                for e in self.edges
            ],
        }


def live_groups(snap: BusSnapshot) -> dict[str, list[str]]:
    """Stream key -> the consumer groups present on it, from a snapshot."""
    return {s.key: [g.name for g in s.groups] for s in snap.streams if s.groups}


def build(
    registry: Registry = default_registry,
    handled: Mapping[str, Iterable[str]] | None = None,
    groups: Mapping[str, Iterable[str]] | None = None,
    *,
    source: str = "",
) -> FlowMap:
    """The map of ``registry``'s types, consumed as ``handled`` says (service -> event types,
    :func:`bus.specs.catalogue.handled`) and as the consumer ``groups`` present in Redis say
    (stream key -> group names, :func:`live_groups`; None when Redis was not consulted)."""
    types = sorted(
        (
            TypeNode(
                m.__contract__.event_type,
                m.__contract__.owner,
                m.__contract__.stream,
                m.__contract__.classification.value,
            )
            for m in registry
        ),
        key=lambda t: (t.owner, t.event_type),
    )
    known = {t.event_type: t for t in types}
    declared = {name: set(found) & known.keys() for name, found in (handled or {}).items()}
    present = {stream: set(names) for stream, names in (groups or {}).items()}
    edges: set[Edge] = set()
    for name, handled_types in declared.items():
        for event_type in handled_types:
            live = name in present.get(known[event_type].stream, ())
            edges.add(Edge(event_type, name, declared=True, live=live))
    for stream, names in present.items():
        on_stream = [t.event_type for t in types if t.stream == stream]
        for name in names:
            if any(known[t].stream == stream for t in declared.get(name, ())):
                continue  # the code says which of the stream's types it handles
            edges |= {Edge(t, name, declared=False, live=True) for t in on_stream}
    services = tuple(
        ServiceNode(n, live=any(e.live for e in edges if e.service == n), in_code=n in declared)
        for n in sorted({e.service for e in edges} | declared.keys())
    )
    order = {t.event_type: i for i, t in enumerate(types)}
    return FlowMap(
        departments=tuple(sorted({t.owner for t in types})),
        types=tuple(types),
        services=services,
        edges=tuple(sorted(edges, key=lambda e: (order[e.event_type], e.service))),
        live_known=groups is not None,
        source=source,
    )


# -- SVG ---------------------------------------------------------------------------------------

_MARGIN = 32
_ROW = 30  # vertical distance between two event types
_BOX = 22  # height of an event type's box
_GAP = 12  # extra space between two departments' types
_HEADER = 110
_COL_GAP_LEFT = 120
_COL_GAP_RIGHT = 190


def _width(text: str, size: float) -> float:
    """Approximate width of ``text`` in the sans-serif font at ``size`` px (no font metrics)."""
    return len(text) * size * 0.58


@dataclass(frozen=True, slots=True)
class _Layout:
    dept_x: float
    dept_w: float
    type_x: float
    type_w: float
    svc_x: float
    svc_w: float
    width: float
    body_top: float
    body_bottom: float
    type_y: dict[str, float]  # centre of each type's box
    dept_span: dict[str, tuple[float, float]]  # top and bottom of each department's block
    svc_y: dict[str, float]


def _layout(flow: FlowMap) -> _Layout:
    dept_w = max([_width(d, 13) + 36 for d in flow.departments] + [130.0])
    type_w = max([_width(t.event_type, 12) + 34 for t in flow.types] + [200.0])
    svc_w = max([_width(s.name, 13) + 48 for s in flow.services] + [160.0])
    dept_x = _MARGIN
    type_x = dept_x + dept_w + _COL_GAP_LEFT
    svc_x = type_x + type_w + _COL_GAP_RIGHT
    width = max(svc_x + svc_w + _MARGIN, 760.0)
    y = _HEADER + 36.0
    top = y
    type_y: dict[str, float] = {}
    dept_span: dict[str, tuple[float, float]] = {}
    for dept in flow.departments:
        start = y
        for t in (t for t in flow.types if t.owner == dept):
            type_y[t.event_type] = y + _ROW / 2
            y += _ROW
        dept_span[dept] = (start + 2, y - 2)
        y += _GAP
    bottom = max(y - _GAP, top + _ROW)
    n = len(flow.services)
    spacing = (bottom - top) / n if n else 0.0
    svc_y = {s.name: top + spacing * (i + 0.5) for i, s in enumerate(flow.services)}
    return _Layout(
        dept_x, dept_w, type_x, type_w, svc_x, svc_w, width, top, bottom, type_y, dept_span, svc_y
    )


def render_svg(flow: FlowMap, *, title: str = "Simpul flow map") -> str:
    """The map as a standalone SVG document (UTF-8 text, deterministic for a given map)."""
    lay = _layout(flow)
    colour = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(flow.departments)}
    owner = {t.event_type: t.owner for t in flow.types}
    legend_top = lay.body_bottom + 40
    height = legend_top + (118 if flow.live_known else 78)
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {lay.width:.0f} {height:.0f}" '
        f'font-family="{escape(_FONT)}" role="img" aria-labelledby="map-title">',
        f'<title id="map-title">{escape(title)}</title>',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        *_header(flow, lay, title),
    ]
    out.append('<g id="edges" fill="none">')
    for dept, (top, bottom) in lay.dept_span.items():
        for t in (t for t in flow.types if t.owner == dept):
            y = lay.type_y[t.event_type]
            x0, x1 = lay.dept_x + lay.dept_w, lay.type_x
            out.append(
                f'<path d="{_curve(x0, (top + bottom) / 2, x1, y)}" stroke="{colour[dept]}" '
                'stroke-width="1.6" stroke-opacity="0.55"/>'
            )
    start, end = _anchors(flow, lay)
    for e in flow.edges:
        x0, y0 = lay.type_x + lay.type_w, start[e]
        x1, y1 = lay.svc_x, end[e]
        faded = flow.live_known and not e.live
        stroke = _MUTED if faded else colour[owner[e.event_type]]
        dash = "" if e.declared else ' stroke-dasharray="2 4" stroke-linecap="round"'
        if e.declared and faded:
            dash = ' stroke-dasharray="7 5"'
        state = "live" if e.live else ("not live" if flow.live_known else "from the code")
        out.append(
            f'<path d="{_curve(x0, y0, x1, y1)}" stroke="{stroke}" stroke-width="1.8" '
            f'stroke-opacity="{0.45 if faded else 0.8}"{dash}><title>{escape(e.event_type)} → '
            f"{escape(e.service)} ({state})</title></path>"
        )
    out.append("</g>")
    out += _departments(flow, lay, colour)
    out += _types(flow, lay, colour)
    out += _services(flow, lay)
    out += _legend(flow, lay, legend_top)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _anchors(flow: FlowMap, lay: _Layout) -> tuple[dict[Edge, float], dict[Edge, float]]:
    """Where each edge leaves its type and reaches its service: spread over the box's height in
    the order of the other end, so edges fan out instead of meeting in one point."""
    start: dict[Edge, float] = {}
    end: dict[Edge, float] = {}
    for t in flow.types:
        out = sorted(flow.consumers_of(t.event_type), key=lambda e: lay.svc_y[e.service])
        start.update(_spread(out, lay.type_y[t.event_type], _BOX - 8))
    for s in flow.services:
        into = [e for e in flow.edges if e.service == s.name]
        into.sort(key=lambda e: lay.type_y[e.event_type])
        end.update(_spread(into, lay.svc_y[s.name], 20))
    return start, end


def _spread(edges: list[Edge], centre: float, span: float) -> dict[Edge, float]:
    if len(edges) < 2:
        return dict.fromkeys(edges, centre)
    step = min(span / (len(edges) - 1), 4.0)
    first = centre - step * (len(edges) - 1) / 2
    return {e: first + i * step for i, e in enumerate(edges)}


def _curve(x0: float, y0: float, x1: float, y1: float) -> str:
    mid = (x0 + x1) / 2
    return f"M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f}"


def _header(flow: FlowMap, lay: _Layout, title: str) -> list[str]:
    live = sum(1 for e in flow.edges if e.live)
    counts = (
        f"{len(flow.departments)} departments · {len(flow.types)} event types · "
        f"{len(flow.services)} consuming services · {len(flow.edges)} subscriptions"
    )
    if flow.live_known:
        where = f" ({escape(flow.source)})" if flow.source else ""
        basis = f"{live} of {len(flow.edges)} subscriptions live in Redis{where}"
    else:
        basis = "from the code only: Redis was not consulted, so nothing is shown as live"
    y_cols = _HEADER + 8
    return [
        f'<text x="{_MARGIN}" y="46" font-size="22" font-weight="700" fill="{_INK}">'
        f"{escape(title)}</text>",
        f'<text x="{_MARGIN}" y="70" font-size="13" fill="{_MUTED}">{escape(counts)}</text>',
        f'<text x="{_MARGIN}" y="89" font-size="13" fill="{_MUTED}">{basis}</text>',
        f'<g font-size="11" font-weight="700" fill="{_MUTED}" letter-spacing="0.08em">',
        f'<text x="{lay.dept_x}" y="{y_cols}">PRODUCING DEPARTMENT</text>',
        f'<text x="{lay.type_x}" y="{y_cols}">EVENT TYPE</text>',
        f'<text x="{lay.svc_x}" y="{y_cols}">CONSUMING SERVICE</text>',
        "</g>",
        f'<line x1="{_MARGIN}" y1="{y_cols + 10}" x2="{lay.width - _MARGIN:.0f}" '
        f'y2="{y_cols + 10}" stroke="{_LINE}"/>',
    ]


def _departments(flow: FlowMap, lay: _Layout, colour: Mapping[str, str]) -> list[str]:
    out = ['<g id="departments">']
    for dept, (top, bottom) in lay.dept_span.items():
        height = max(bottom - top, _BOX)
        count = sum(1 for t in flow.types if t.owner == dept)
        out.append(
            f"<g><title>{escape(dept)}: {count} event type{'' if count == 1 else 's'}</title>"
            f'<rect x="{lay.dept_x}" y="{top:.1f}" width="{lay.dept_w:.0f}" '
            f'height="{height:.1f}" rx="6" fill="{colour[dept]}" fill-opacity="0.14" '
            f'stroke="{colour[dept]}" stroke-width="1.5"/>'
            f'<text x="{lay.dept_x + 14}" y="{(top + bottom) / 2 + 4.5:.1f}" font-size="13" '
            f'font-weight="700" fill="{_INK}">{escape(dept)}</text></g>'
        )
    out.append("</g>")
    return out


def _types(flow: FlowMap, lay: _Layout, colour: Mapping[str, str]) -> list[str]:
    out = ['<g id="event-types">']
    consumed = {e.event_type for e in flow.edges}
    for t in flow.types:
        y = lay.type_y[t.event_type] - _BOX / 2
        border = _LINE if t.event_type in consumed else _MUTED
        dash = "" if t.event_type in consumed else ' stroke-dasharray="3 3"'
        note = "" if t.event_type in consumed else ", no consumer yet"
        out.append(
            f"<g><title>{escape(t.event_type)} ({escape(t.classification)}; "
            f"stream {escape(t.stream)}{note})</title>"
            f'<rect x="{lay.type_x}" y="{y:.1f}" width="{lay.type_w:.0f}" height="{_BOX}" '
            f'rx="4" fill="#ffffff" stroke="{border}"{dash}/>'
            f'<rect x="{lay.type_x}" y="{y:.1f}" width="5" height="{_BOX}" rx="2" '
            f'fill="{colour[t.owner]}"/>'
            f'<text x="{lay.type_x + 14}" y="{y + 15:.1f}" font-size="12" fill="{_INK}">'
            f"{escape(t.event_type)}</text></g>"
        )
    out.append("</g>")
    return out


def _services(flow: FlowMap, lay: _Layout) -> list[str]:
    out = ['<g id="services">']
    for s in flow.services:
        y = lay.svc_y[s.name]
        if not flow.live_known:
            dot = ""
            state = "live state unknown"
        elif s.live:
            dot = f'<circle cx="{lay.svc_x + 16}" cy="{y:.1f}" r="5" fill="{_LIVE}"/>'
            state = "consumer group present in Redis"
        else:
            dot = (
                f'<circle cx="{lay.svc_x + 16}" cy="{y:.1f}" r="4.5" fill="#ffffff" '
                f'stroke="{_MUTED}" stroke-width="1.5"/>'
            )
            state = "no consumer group in Redis"
        origin = "" if s.in_code else "; not found in the code"
        outline = "" if s.in_code else ' stroke-dasharray="3 3"'
        text_x = lay.svc_x + (30 if flow.live_known else 14)
        out.append(
            f"<g><title>{escape(s.name)}: {state}{origin}</title>"
            f'<rect x="{lay.svc_x:.0f}" y="{y - 14:.1f}" width="{lay.svc_w:.0f}" height="28" '
            f'rx="14" fill="#f5f7fa" stroke="{_INK if s.in_code else _MUTED}" '
            f'stroke-width="1.2"{outline}/>'
            f'{dot}<text x="{text_x:.0f}" y="{y + 4.5:.1f}" font-size="13" font-weight="700" '
            f'fill="{_INK}">{escape(s.name)}</text></g>'
        )
    out.append("</g>")
    return out


def _legend(flow: FlowMap, lay: _Layout, top: float) -> list[str]:
    x = _MARGIN
    out = [
        f'<g id="legend" font-size="12" fill="{_INK}">',
        f'<line x1="{_MARGIN}" y1="{top - 14}" x2="{lay.width - _MARGIN:.0f}" y2="{top - 14}" '
        f'stroke="{_LINE}"/>',
        f'<text x="{x}" y="{top + 6}" font-size="11" font-weight="700" fill="{_MUTED}" '
        'letter-spacing="0.08em">LEGEND</text>',
    ]
    lines = [
        (
            "",
            _INK,
            "subscription: the service's consumer group reads the type's stream"
            if flow.live_known
            else "subscription declared in the service's code",
        ),
        (' stroke-dasharray="7 5"', _MUTED, "declared in the code, no consumer group in Redis"),
        (
            ' stroke-dasharray="2 4" stroke-linecap="round"',
            _INK,
            "consumer group in Redis the code does not declare (reads every type of the stream)",
        ),
    ]
    if not flow.live_known:
        lines = lines[:1]
    for i, (dash, stroke, text) in enumerate(lines):
        y = top + 28 + i * 20
        out.append(
            f'<line x1="{x}" y1="{y - 4}" x2="{x + 40}" y2="{y - 4}" stroke="{stroke}" '
            f'stroke-width="2"{dash}/><text x="{x + 52}" y="{y}">{escape(text)}</text>'
        )
    y = top + 28 + len(lines) * 20
    if flow.live_known:
        out.append(
            f'<circle cx="{x + 6}" cy="{y - 4}" r="5" fill="{_LIVE}"/>'
            f'<text x="{x + 18}" y="{y}">consumer group present in Redis</text>'
            f'<circle cx="{x + 246}" cy="{y - 4}" r="4.5" fill="#ffffff" stroke="{_MUTED}" '
            f'stroke-width="1.5"/><text x="{x + 258}" y="{y}">no group in Redis</text>'
        )
    else:
        out.append(
            f'<text x="{x}" y="{y}">Colours: the producing department. A dashed event '
            "type has no consumer yet.</text>"
        )
    out.append("</g>")
    return out


# -- HTML --------------------------------------------------------------------------------------


def render_html(
    flow: FlowMap, *, title: str = "Simpul flow map", generated_at: datetime | None = None
) -> str:
    """A standalone page: the SVG, when it was generated, and the same map as a table."""
    moment = (generated_at or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    svg = render_svg(flow, title=title).split("\n", 1)[1]  # no XML declaration inside HTML
    rows = []
    for t in flow.types:
        consumers = ", ".join(
            f"{escape(e.service)}{'' if e.live or not flow.live_known else ' (not live)'}"
            for e in flow.consumers_of(t.event_type)
        )
        rows.append(
            f"<tr><td>{escape(t.owner)}</td><td><code>{escape(t.event_type)}</code></td>"
            f"<td>{escape(t.classification)}</td><td>{consumers or '—'}</td></tr>"
        )
    basis = (
        f"live consumer groups from {escape(flow.source or 'Redis')}"
        if flow.live_known
        else "from the code only (Redis not consulted)"
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="simpul map">
<title>{escape(title)}</title>
<style>
body {{ font-family: {_FONT}; color: {_INK}; margin: 2rem auto; max-width: 1200px;
       padding: 0 1.5rem; }}
h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
.meta {{ color: {_MUTED}; margin-top: 0; }}
figure {{ margin: 1.5rem 0; overflow-x: auto; border: 1px solid {_LINE}; border-radius: 8px; }}
figure svg {{ display: block; max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; width: 100%; font-size: .92rem; }}
th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid {_LINE}; }}
th {{ color: {_MUTED}; font-weight: 600; }}
</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">Generated at <time datetime="{stamp}">{stamp}</time> by <code>simpul map</code>;
{basis}.</p>
<figure>
{svg}</figure>
<h2>Event types and their consumers</h2>
<table>
<thead><tr><th>Department</th><th>Event type</th><th>Classification</th><th>Consumers</th></tr>
</thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>
"""
