"""A twin's couplings as a diagram, generated from its own connections (Mermaid text)."""

from __future__ import annotations

from ._twin import Twin


def twin_diagram(twin: Twin, *, direction: str = "LR") -> str:
    """A Mermaid flowchart of ``twin``: one node per organ (its class), one labelled edge per
    connection (``output -> input``). Paste it into a ```` ```mermaid ```` block; the docs
    render it."""
    if direction not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"direction must be LR, TB, RL or BT, not {direction!r}")
    lines = [f"flowchart {direction}"]
    for name, organ in zip(twin.names, twin.organs):
        kind = type(organ).__name__
        stiff = ", stiff" if organ.stiffness == "stiff" else ""
        lines.append(f'    {name}["{name}<br/><small>{kind}{stiff}</small>"]')
    for c in twin.connections:
        label = c.source_port if c.source_port == c.target_port else (
            f"{c.source_port} → {c.target_port}")
        lines.append(f'    {c.source_organ} -->|"{label}"| {c.target_organ}')
    return "\n".join(lines)
