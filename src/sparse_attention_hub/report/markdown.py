"""Blocks -> report.md: the same content as index.html, figures linked as files under figures/."""

from __future__ import annotations

from sparse_attention_hub.report.document import Block, Cell, Figure, Heading, Paragraph, Table


def render_markdown(title: str, subtitle: str, blocks: list[Block]) -> str:
    parts = [f"# {title}", subtitle]
    parts += [_block(block) for block in blocks]
    return "\n\n".join(parts) + "\n"


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Table):
        return _table(block)
    return _figure(block)


def _table(table: Table) -> str:
    header = [h or " " for h in table.header]
    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines.append("| " + " | ".join(_escape(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        lines.append("")
        lines += [f"{n}. {_escape(note)}" for n, note in enumerate(table.notes, start=1)]
    return "\n".join(lines)


def _cell(cell: Cell) -> str:
    text = f"**{cell.text}**" if cell.state == "baseline" else cell.text
    if cell.note is not None:
        text += f" [{cell.note}]"
    if cell.detail:
        text += f" ({cell.detail})"
    return _escape(text)


def _figure(figure: Figure) -> str:
    return (
        f"### {figure.title}\n\n![{figure.title}](figures/{figure.name}.png)\n\n"
        f"{figure.caption} Data: [data/{figure.name}.csv](data/{figure.name}.csv)"
    )


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
