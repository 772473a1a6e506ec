"""One problem's search tree: as a rich Tree for the terminal, or as Graphviz dot.

Each node shows its depth and ordinal, its step score, how many children the allocation gave
it (0 = pruned; none recorded = still open, or the search stopped there; for particle filtering
the copies it was resampled into and its resampling probability; for DVTS its subtree), the
start of its step text, and for a finished answer the answer and its verdict. `max_depth` hides
deeper nodes and says how many were hidden below each cut.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rich.markup import escape
from rich.tree import Tree

from rebase_cli.records import NodeAllocation, NodeRecord, RunRecord
from rebase_cli.reports.grading_cache import grade_pairs
from rebase_cli.reports.labels import SIMULATED_LABEL
from rebase_cli.store.database import Database
from rebase_cli.store.reader import RunReader, run_record

_TEXT_CHARS = 72


@dataclass(frozen=True)
class TreeNode(NodeRecord):
    """A stored node with the decision on it and, for a finished answer, its verdict."""

    children_given: int | None = None
    correct: bool | None = None
    weight: float | None = None
    subtree: int | None = None
    resampled: bool = False


@dataclass(frozen=True)
class ProblemTree:
    """A problem's nodes in (depth, ordinal) order; `children` maps node id → child ids."""

    run: RunRecord
    index: int
    question: str
    reference: str
    status: str
    error: str | None
    nodes: tuple[TreeNode, ...]
    children: dict[int, tuple[int, ...]]

    @property
    def root(self) -> TreeNode | None:
        return self.nodes[0] if self.nodes and self.nodes[0].depth == 0 else None

    def by_id(self) -> dict[int, TreeNode]:
        return {node.id: node for node in self.nodes}


def load_problem_tree(db: Database, run: RunRecord, index: int) -> ProblemTree:
    """The tree of problem `index` (dataset index) of `run`, with verdicts on its answers."""
    run = run_record(run)
    stored = RunReader(db).problem_tree(run.id, index)
    problem, given = stored.problem, stored.allocations
    reference = problem.reference
    answers = {n.answer for n in stored.nodes if n.terminal and n.answer is not None}
    verdicts, _ = grade_pairs(db, run.dataset, [(a, reference) for a in sorted(answers)])
    # A particle filtering node's children are its resampled copies (from depth 1 on).
    particle = run.method == "particle"
    nodes = tuple(
        _tree_node(
            n,
            given.get(n.id),
            verdicts.get((n.answer, reference)) if n.terminal and n.answer is not None else None,
            resampled=particle and n.depth > 0,
        )
        for n in stored.nodes
    )
    children: dict[int, list[int]] = {}
    for node in nodes:
        if node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(node.id)
    return ProblemTree(
        run=run,
        index=problem.index,
        question=problem.question,
        reference=reference,
        status=problem.status,
        error=problem.error,
        nodes=nodes,
        children={k: tuple(v) for k, v in children.items()},
    )


def _tree_node(
    node: NodeRecord, decision: NodeAllocation | None, correct: bool | None, resampled: bool
) -> TreeNode:
    return TreeNode(
        **{f.name: getattr(node, f.name) for f in fields(NodeRecord)},
        children_given=None if decision is None else decision.children,
        correct=correct,
        weight=None if decision is None else decision.weight,
        subtree=None if decision is None else decision.subtree,
        resampled=resampled,
    )


def _snippet(text: str, limit: int = _TEXT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _hidden_below(tree: ProblemTree, node_id: int) -> int:
    stack, count = list(tree.children.get(node_id, ())), 0
    while stack:
        current = stack.pop()
        count += 1
        stack.extend(tree.children.get(current, ()))
    return count


def _allocation_note(node: TreeNode) -> str:
    if node.terminal:
        return node.terminal_reason or "terminal"
    if node.children_given is None:
        return "open"
    subtree = f" · subtree {node.subtree}" if node.subtree is not None else ""
    if node.children_given == 0:
        return ("not drawn" if node.resampled else "pruned") + subtree
    if node.resampled and node.weight is not None:
        copies = "copy" if node.children_given == 1 else "copies"
        return f"resampled → {node.children_given} {copies} (p {node.weight:.3f})"
    count = node.children_given
    return f"→ {count} {'child' if count == 1 else 'children'}{subtree}"


def node_label(node: TreeNode) -> str:
    """The plain-text summary of a node shared by both renderers."""
    parts = [f"d{node.depth} #{node.ordinal}", f"score {node.score:.3f}"]
    answered = node.terminal and node.answer is not None
    if not (answered and node.terminal_reason == "answer"):
        parts.append(_allocation_note(node))  # "answer" would only repeat what follows
    if answered:
        verdict = {True: "correct", False: "wrong", None: "ungraded"}[node.correct]
        parts.append(f"answer {node.answer} ({verdict})")
    return " · ".join(parts)


def rich_tree(tree: ProblemTree, max_depth: int | None = None) -> Tree:
    """The tree for the terminal (see module docstring)."""
    title = (
        f"[bold]run-{tree.run.id} · problem {tree.index}[/] · "
        f"reference [bold]{escape(tree.reference)}[/] · {tree.status}"
    )
    if tree.run.simulated:
        title += f" · [bold red]{SIMULATED_LABEL}[/]"
    out = Tree(title)
    out.add(f"[dim]{escape(_snippet(tree.question, 160))}[/]")
    if tree.error:
        out.add(f"[red]error: {escape(tree.error)}[/]")
    root = tree.root
    if root is None:
        out.add("[dim](no nodes committed yet)[/]")
        return out
    nodes = tree.by_id()

    def add(branch: Tree, node_id: int) -> None:
        for child_id in tree.children.get(node_id, ()):
            child = nodes[child_id]
            style = {True: "green", False: "red", None: ""}[child.correct]
            if not child.terminal and child.children_given == 0:
                style = "dim"
            label = f"{escape(node_label(child))}  [italic]{escape(_snippet(child.text))}[/]"
            sub = branch.add(f"[{style}]{label}[/]" if style else label)
            if max_depth is not None and child.depth >= max_depth:
                hidden = _hidden_below(tree, child_id)
                if hidden:
                    sub.add(f"[dim]… {hidden} nodes below depth {max_depth}[/]")
                continue
            add(sub, child_id)

    add(out, root.id)
    return out


def dot_graph(tree: ProblemTree, max_depth: int | None = None) -> str:
    """Graphviz source: boxes coloured green/red for right/wrong answers, grey when pruned."""
    name = f"run-{tree.run.id} problem {tree.index}"
    caption = f"{name} · reference {tree.reference}"
    if tree.run.simulated:
        caption = f"{SIMULATED_LABEL}\n{caption}"
    lines = [
        f"digraph {_quote(name)} {{",
        "  node [shape=box, style=filled, fillcolor=white, fontname=Helvetica, fontsize=10];",
        f"  label={_quote(caption)}; labelloc=t;",
    ]
    shown = [n for n in tree.nodes if max_depth is None or n.depth <= max_depth]
    ids = {n.id for n in shown}
    for node in shown:
        if node.depth == 0:
            label = f"root · {_allocation_note(node)}"
        else:
            label = f"{node_label(node)}\n{_snippet(node.text, 48)}"
        fill = {True: "#c8e6c9", False: "#ffcdd2"}.get(node.correct)  # type: ignore[arg-type]
        if fill is None and not node.terminal and node.children_given == 0:
            fill = "#eeeeee"
        attrs = f"label={_quote(label)}" + (f', fillcolor="{fill}"' if fill else "")
        lines.append(f"  n{node.id} [{attrs}];")
    for node in shown:
        if node.parent_id is not None and node.parent_id in ids:
            lines.append(f"  n{node.parent_id} -> n{node.id};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _quote(text: str) -> str:
    return f'"{_esc(text)}"'
