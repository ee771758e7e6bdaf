"""Human-readable incident output for the terminal."""
from __future__ import annotations

import textwrap

COLUMNS = (("SEVERITY", 8), ("TYPE", 15), ("HOST", 16), ("SERVICE", 16), ("COUNT", 5),
           ("LAST SEEN", 19), ("TITLE", 0))


def _cell(value, width: int) -> str:
    text = "" if value is None else str(value)
    if width and len(text) > width:
        text = text[: width - 1] + "~"
    return text.ljust(width) if width else text


def _when(stamp: str | None) -> str:
    return (stamp or "")[:19].replace("T", " ")


def table(incidents: list[dict], *, details: bool = True) -> str:
    if not incidents:
        return "No incidents found.\n"
    lines = ["  ".join(_cell(name, w) for name, w in COLUMNS)]
    for inc in incidents:
        row = (inc["severity"], inc["type"], inc["host"], inc["service"], inc["count"],
               _when(inc["last_seen"]), inc["title"] + ("" if inc["status"] == "open" else f" [{inc['status']}]"))
        lines.append("  ".join(_cell(v, w) for v, (_, w) in zip(row, COLUMNS)))
    if details:
        wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="           ")
        for n, inc in enumerate(incidents, 1):
            lines.append("")
            lines.append(f"[{n}] {inc['title']}  ({inc['rule']}, id {inc['id']})")
            lines.append(wrap.fill(f"what:  {inc['summary']}"))
            hosts = ", ".join(inc["hosts"])
            lines.append(wrap.fill(f"where: {hosts} -- {_when(inc['first_seen'])} .. {_when(inc['last_seen'])}"))
            res = "; ".join(f"{k}: {', '.join(map(str, v[:4]))}" + (" ..." if len(v) > 4 else "")
                            for k, v in inc["resources"].items() if v)
            if res:
                lines.append(wrap.fill(f"ids:   {res}"))
            if inc["request_ids"]:
                lines.append(wrap.fill(f"reqs:  {', '.join(inc['request_ids'][:4])}"))
            rc = (inc.get("details") or {}).get("root_cause")
            if rc and rc.get("reason"):
                lines.append(wrap.fill(f"chain: {rc['reason']}"))
            lines.append(wrap.fill(f"cause: {inc['probable_cause']}"))
            lines.append(wrap.fill(f"fix:   {inc['remediation']}"))
            ev = inc["evidence"][-1] if inc["evidence"] else None
            if ev:
                first = (ev["message"] or "").split("\n", 1)[0][:160]
                lines.append(wrap.fill(f"last:  {_when(ev['@timestamp'])} {ev['host']} {ev['service']} "
                                       f"{ev['level']} {first}"))
    return "\n".join(lines) + "\n"
