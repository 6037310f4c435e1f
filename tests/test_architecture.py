"""The layers of docs/architecture.md hold: who may import whom, torch-free layers, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "otx_anomaly"
TORCH_WORLD = ("torch", "torchvision", "lightning", "anomalib", "nncf", "timm", "torchmetrics")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Absolute names imported by a file (relative imports are not used in the package).

    Args:
        path: the file.
        module_level_only: only the imports that run on import: not those inside functions, nor
            those under ``if TYPE_CHECKING:``, which never run.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.If) and module_level_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("module", [m for m in MODULES if _layer(m) in ("data", "models", "metrics")])
def test_training_layers_never_import_deployment_results_or_cli(module):
    forbidden = [name for name in _imports(MODULES[module], module_level_only=False)
                 if name.startswith(("otx_anomaly.deploy", "otx_anomaly.results", "otx_anomaly.cli"))]
    assert not forbidden, f"{module} imports {forbidden}"


@pytest.mark.parametrize("module", [m for m in MODULES if _layer(m) in ("io", "results", "deploy")
                                    or m in ("otx_anomaly.errors", "otx_anomaly.tasks", "otx_anomaly.heads",
                                              "otx_anomaly.export_names", "otx_anomaly.thresholds")])
def test_torch_free_layers_import_no_torch_at_module_level_nor_the_cli(module):
    names = _imports(MODULES[module], module_level_only=True)
    torch_world = [n for n in names if n.split(".")[0] in TORCH_WORLD]
    cli = [n for n in names if n.startswith("otx_anomaly.cli")]
    assert not torch_world and not cli, f"{module} imports {torch_world + cli} at module level"


def _import_cycle(modules: dict[str, Path]) -> list[str] | None:
    """The first import cycle among ``modules``, as the modules along it; ``None`` when there is none.

    Every import counts: those inside functions (a cycle deferred to the first call) and those under
    ``if TYPE_CHECKING:`` (a cycle for type checkers and readers) as well as the module-level ones.
    """
    graph = {module: {name for name in _imports(path, module_level_only=False) if name in modules and name != module}
             for module, path in modules.items()}
    # a package's import of its own submodules is the package's: drop the edge back to the package
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dependency in sorted(graph[module]):
            if state.get(dependency) == 1:
                return path[path.index(dependency):] + [dependency]
            if dependency not in state and (cycle := visit(dependency)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycles_between_modules():
    cycle = _import_cycle(MODULES)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_an_import_cycle_through_type_checking_imports_is_found(tmp_path):
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (tmp_path / "b.py").write_text("from pkg.a import A\n")
    (tmp_path / "c.py").write_text("def f():\n    from pkg.a import A\n")
    modules = {f"pkg.{name}": tmp_path / f"{name}.py" for name in "abc"}
    assert _import_cycle(modules) == ["pkg.a", "pkg.b", "pkg.a"]
    (tmp_path / "b.py").write_text("def f():\n    from pkg.a import A\n")  # deferred to a call: a cycle still
    assert _import_cycle(modules) == ["pkg.a", "pkg.b", "pkg.a"]
    del modules["pkg.b"]
    assert _import_cycle(modules) is None


def test_no_module_is_longer_than_about_350_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 360}
    assert not long, long


def test_every_user_error_class_lives_in_errors_py():
    from otx_anomaly.errors import OtxAnomalyError

    defined_elsewhere = []
    for module, path in MODULES.items():
        if module == "otx_anomaly.errors":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith("Error") for b in node.bases):
                defined_elsewhere.append(f"{module}.{node.name}")
    assert not defined_elsewhere, defined_elsewhere
    assert OtxAnomalyError.__subclasses__()
