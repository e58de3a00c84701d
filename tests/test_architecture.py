"""The shape of the code: no import cycles, and the config read only where a run is wired together.

Data flows one way (config -> objects -> Trainer -> files): a task's entry module reads the config and
hands values and objects down, so only the modules that wire a run may import OmegaConf or Hydra.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nst_research"
# The command line, the app, each task's entry (and its checks), building parts from nodes (a feed-forward
# checkpoint rebuilds its network from the node it saved), logger set-up, multirun bookkeeping, and the harnesses
# that run tasks from composed configs as the command line does (the benchmark, the feed-forward comparison), and
# scripts/judge.py, which builds the judge from its node, and scripts/compare.py, which parses a run's saved
# command-line overrides with Hydra's own parser to label it by the values it ran with.
WIRING = {"cli", "app", "parts", "nst.task", "nst.checks", "gan.task", "feedforward.task", "feedforward.checkpoint",
          "feedforward.comparison", "judge.command", "tracking.loggers", "tracking.sweep", "tracking.compare"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules `path` imports anywhere in it (top level or inside functions), as absolute names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


MODULES = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def internal_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a package import counts as its __init__)."""
    known = set(MODULES)
    return {name: {n.removeprefix("nst_research.") for n in names if n.removeprefix("nst_research.") in known
                   and n.startswith("nst_research.")} - {name}
            for name, names in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target] if target in path else [node, target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycles():
    assert find_cycle(internal_graph()) is None, " -> ".join(find_cycle(internal_graph()))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_only_the_wiring_reads_the_config():
    readers = {name for name, names in MODULES.items()
               if any(n == "omegaconf" or n.startswith(("omegaconf.", "hydra")) for n in names)}
    assert readers - WIRING - {name for name in readers if name.startswith("bench")} == set()
