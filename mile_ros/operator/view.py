"""The operator's screen drawn with ``rich``: one renderable from a :class:`ScreenState` (no rclpy)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mile_ros.operator.state import ScreenState

__all__ = ["BUTTON_LABELS", "render", "sparkline"]

# What each pad's buttons are called (config/joy_<name>.yaml lists them by index only).
BUTTON_LABELS = {
    "ps3": {0: "cross", 1: "circle", 2: "triangle", 3: "square", 4: "L1", 5: "R1", 6: "L2", 7: "R2", 10: "PS"},
    "sdl": {0: "A", 1: "B", 2: "X", 3: "Y", 6: "start", 9: "LB", 10: "RB"},
}
# The buttons' meaning, as the driver and arbitration act on them (docs/real-robot.md, section 8).
MEANINGS = (
    ("takeover", "hold: you drive (I = 1); let go: the policy drives"),
    ("success", "end the episode: success"),
    ("failure", "end the episode: failure"),
    ("discard", "end and discard it (bag kept, never trained on)"),
    ("home", "send the arm home"),
)
_BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 60) -> str:
    """The last ``width`` values in [0, 1] as block characters."""
    tail = list(values)[-width:]
    return "".join(_BLOCKS[min(8, max(0, round(v * 8)))] for v in tail)


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _episode(state: ScreenState) -> Panel:
    ep = state.episode
    text = Text()
    text.append(ep.name, style="bold")
    if ep.seed is not None:
        text.append(f"  (seed {ep.seed})", style="dim")
    text.append(f"\nstep {ep.steps}   elapsed {_clock(state.elapsed())}   human steps {ep.human_steps}")
    if ep.ended is not None:
        outcome = {True: "success", False: "failure"}.get(ep.success, "ended")
        text.append(f"\nended: {outcome} ({ep.end_reason})", style="green" if ep.success else "yellow")
    text.append("\n")
    if ep.ended is not None or ep.iteration is None:
        text.append(" waiting for the next episode ", style="bold black on white")
    elif state.takeover:
        text.append(" TAKEOVER: HUMAN DRIVING ", style="bold white on red")
    elif state.source == "hold":
        text.append(" HOLD (no fresh command) ", style="bold black on yellow")
    else:
        text.append(" policy driving ", style="bold black on green")
    return Panel(text, title="episode", border_style="cyan")


def _probability(state: ScreenState) -> Panel:
    text = Text()
    if state.p_intervene is None:
        text.append("P(I=1|s) = -  (no prediction yet)")
    else:
        p = state.p_intervene
        style = "bold red" if p >= 0.5 else "bold"
        text.append("P(I=1|s) = ")
        text.append(f"{p:.3f}", style=style)
        text.append("   predicted chance that you take over here\n")
        text.append(sparkline(state.p_history), style="magenta")
    return Panel(text, title="predicted takeover", border_style="magenta")


def _buttons(state: ScreenState, mapping: dict[str, int], labels: dict[int, str]) -> Panel:
    table = Table.grid(padding=(0, 2))
    for role, meaning in MEANINGS:
        if role not in mapping:
            continue
        idx = mapping[role]
        name = labels.get(idx, f"button {idx}")
        pressed = idx in state.pressed
        table.add_row(Text(f"[{name}]", style="reverse bold" if pressed else "bold"), Text(meaning))
    return Panel(table, title="pad", border_style="blue")


def _curve(state: ScreenState) -> Panel:
    table = Table(box=None, pad_edge=False)
    table.add_column("iteration", justify="right")
    table.add_column("policy alone", justify="right")
    table.add_column("", no_wrap=True)
    table.add_column("with you", justify="right")
    table.add_column("takeover rate", justify="right")
    for it in sorted(state.curve):
        point = state.curve[it]
        bar = "█" * round(10 * point.eval_rate) if point.eval_rate is not None else ""
        table.add_row(
            str(it),
            _rate(point.eval_rate),
            Text(f"{bar:<10}", style="green"),
            _rate(point.train_rate),
            _rate(point.intervention_rate),
        )
    if not state.curve:
        table.add_row("-", "-", "", "-", "-")
    return Panel(table, title="learning curve (success per iteration)", border_style="green")


def _trainer(state: ScreenState) -> Panel:
    t = state.trainer
    if t.training:
        fraction = state.trainer_fraction()
        head = Text(f"training update {t.update}: {_clock(state.trainer_elapsed())} elapsed")
        if fraction is None:
            head.append("  (first update: no estimate yet)", style="dim")
            bar = ProgressBar(total=None, width=40, pulse=True)
        else:
            head.append(f"  (~{fraction:.0%} of the last update's {t.last_seconds:.0f} s)", style="dim")
            bar = ProgressBar(total=1.0, completed=fraction, width=40)
        body: RenderableType = Group(head, bar)
    elif t.update is not None:
        body = Text(f"update {t.update} done: {t.last_rows} steps in {t.last_seconds} s -> {Path(t.checkpoint).name}")
    else:
        body = Text("idle: no update asked for yet")
    return Panel(body, title="trainer", border_style="yellow")


def render(
    state: ScreenState, mapping: dict[str, int], pad: str = "ps3", header: str = "mile_ros operator screen"
) -> RenderableType:
    """The whole screen."""
    top = Text(header, style="bold")
    if state.active_checkpoint:
        top.append(f"   policy: {Path(state.active_checkpoint).name}", style="dim")
    if state.done:
        top.append("   SESSION COMPLETE", style="bold green")
    last = Text(f"last: {state.last_progress}" if state.last_progress else "last: -", style="dim")
    return Group(
        top,
        _episode(state),
        _probability(state),
        _buttons(state, mapping, BUTTON_LABELS.get(pad, {})),
        _curve(state),
        _trainer(state),
        last,
    )
