"""Every code example in docs/*.md and README.md runs here, so that none can rot silently.

How each kind of fenced block is checked (docs/index.md tells readers the same):

- ``python``: executed, page by page, top to bottom in one namespace, in a fresh working folder
  that holds what the docs tell readers to have: the demo's dataset at ``otx_anomaly_demo/data``
  (a small one), ``resnet18.safetensors`` (the shared ImageNet weights, else random ones) and
  ``recipes/``. ImageNet downloads are served from that file, since tests run offline, and data
  loaders run in-process (``num_workers=0``), which is faster on the tiny data.
- ``bash``: each command (comments dropped, ``\\`` continuations joined, ``&&`` split).
  ``python -m otx_anomaly fit|validate|test|predict ...`` goes through LightningCLI's parser
  (``--print_config``: every key and type checked, nothing run); the other subcommands through
  their own parser, stopped once it has parsed. The slow test runs every one but the demo for
  real, made small (demo data, 64x64 images, at most 2 epochs, one process), with placeholders
  replaced by the files of a quick fit.
  ``python -m benchmarks SUBCOMMAND ...``: the subcommand's ``--help`` lists every option used.
  ``pip install``: the extras exist. mkdocs, pytest, tox and ruff commands are not run. Anything else fails.
- ``yaml``: parsed, and every ``class_path`` with its ``init_args`` instantiated.
- ``json``: parsed. ``text`` or no language: not code.
- Inline commands (a code span starting ``python -m otx_anomaly`` or ``python -m benchmarks``, with
  arguments) are parsed as above.
- Placeholders in angle brackets (``<checkpoint>``) stay strings for parsing; real runs map them
  through ``PLACEHOLDERS``.
- A block right after ``<!-- docs-test: skip REASON -->`` is not run; the reason is required.
  ``<!-- docs-test: slow -->`` on a page runs its Python blocks with the slow tests only.

Docstring examples (``>>>``) of the modules in the API reference run as doctests. Two rules of the
front door hold too: README.md stays short, and no page tells the project's history (the sections
that the benchmark tool writes between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` carry
their date by design and are left out of that check).
"""

from __future__ import annotations

import argparse
import contextlib
import doctest
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml

from tests.conftest import WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
DEMO_DATA = Path("otx_anomaly_demo/data")  # relative to the working folder, as the docs write it
LIGHTNING_SUBCOMMANDS = {"fit", "validate", "test", "predict"}
NOT_RUN = {"mkdocs", "pytest", "tox", "ruff", "git", "cd"}
SLOW_PAGES = {"README.md"}  # its Python example fits at the default 256x256 (and it keeps no markers)
SLOW_MARK = "<!-- docs-test: slow -->"
README_MAX_LINES = 150
# Words that tell how the project got here rather than what it is.
HISTORY = re.compile(r"\b(?:sessions?|today|yesterday|not re-?run|not re-?measured|no longer|used to be|"
                     r"issue ?#?\d+|20\d\d-\d\d-\d\d)\b|#\d+\b", re.I)
GENERATED = re.compile(r"<!--\s*BEGIN ([\w-]+)\s*-->.*?<!--\s*END \1\s*-->", re.S)  # written by `python -m benchmarks`
PLACEHOLDERS = {
    "<checkpoint>": "{checkpoint}", "<ckpt>": "{checkpoint}", "<last.ckpt>": "{checkpoint}",
    "<file>": "resnet18.safetensors", "<weights>": "resnet18.safetensors",
    "<file.safetensors>": "resnet18.safetensors",
    "<dir>": str(DEMO_DATA), "<root>": str(DEMO_DATA), "<name>": "demo", "<category>": "demo",
    "<model.xml>": "{model_xml}",
}
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\b\s*(?P<reason>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`(python -m (?:otx_anomaly|benchmarks) [^`\n]+)`")


@dataclass
class Block:
    page: Path
    line: int  # of the first line of code, 1-based
    lang: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        skip = SKIP_MARK.search(before)
        if skip and not skip.group("reason"):
            raise AssertionError(f"{page}: a docs-test skip marker needs a reason")
        indent = len(match.group("indent"))
        code = "\n".join(line[indent:] for line in match.group("body").splitlines())
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append(Block(page, line, match.group("lang").lower(), code, skip.group("reason") if skip else None))
    return blocks


def inline_commands(page: Path) -> list[tuple[str, str]]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [(f"{page.relative_to(ROOT)} (inline)", match.group(1)) for match in INLINE.finditer(text)]


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block, as argument lists."""
    commands = []
    for line in block.code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            end = tokens.index("&&") if "&&" in tokens else len(tokens)
            command, tokens = tokens[:end], tokens[end + 1:]
            while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", command[0]):  # VAR=value prefixes
                command = command[1:]
            if command:
                commands.append(command)
    return commands


ALL_BLOCKS = [block for page in PAGES for block in read_blocks(page)]
CODE_LANGS = {"python", "py", "bash", "sh", "shell", "console", "yaml", "yml", "json"}
TEXT_LANGS = {"", "text", "txt", "csv"}


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


def _otx_args(command: list[str]) -> list[str] | None:
    """The arguments after ``python -m otx_anomaly`` / ``otx-anomaly``, or None for other commands."""
    if command[:3] == ["python", "-m", "otx_anomaly"]:
        return command[3:]
    if command[:1] == ["otx-anomaly"]:
        return command[1:]
    return None


COMMANDS = [(block.where, command) for block in ALL_BLOCKS
            if block.lang in ("bash", "sh", "shell", "console") and not block.skip
            for command in shell_commands(block)]
# Inline: a bare subcommand ("`python -m otx_anomaly export`") names it and is not an example.
COMMANDS += [(where, shlex.split(text)) for page in PAGES for where, text in inline_commands(page)
             if len(shlex.split(text)) > 4]


# --- the working folder the examples expect -------------------------------------------------------


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared ImageNet ResNet18 weights, or random ones of the same layout when they are absent."""
    if WEIGHTS.is_file():
        return WEIGHTS
    import timm
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(path))
    return path


@pytest.fixture
def workdir(tmp_path: Path, weights_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder as the docs assume it: demo data, a weights file, the recipes; ImageNet
    downloads served from the weights file."""
    from otx_anomaly.data import datamodules, make_demo_dataset
    from otx_anomaly.models import backbone

    make_demo_dataset(tmp_path / DEMO_DATA, n_train=12, n_test_good=4, n_test_defect=3, image_size=64)
    (tmp_path / "resnet18.safetensors").symlink_to(weights_file)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.setattr(backbone, "download_backbone_weights",
                        lambda extractor: backbone.load_backbone_weights(extractor, weights_file))
    setup = datamodules._FolderDataModule.setup  # noqa: SLF001 (not __init__: the CLI reads its signature)

    def in_process(self, *args, **kwargs) -> None:  # noqa: ANN001
        self.num_workers = 0
        setup(self, *args, **kwargs)

    monkeypatch.setattr(datamodules._FolderDataModule, "setup", in_process)  # noqa: SLF001
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fit_checkpoint(root: Path, model_name: str) -> Path:
    import lightning.pytorch as pl

    from otx_anomaly.data import MVTecDataModule, make_demo_dataset
    from otx_anomaly.models import Padim, Stfpm

    data = make_demo_dataset(root / "data", n_train=16, n_test_good=6, n_test_defect=4, image_size=64)
    model = (Padim if model_name == "padim" else Stfpm)(pre_trained=False, image_size=(64, 64))
    arguments = {**model.trainer_arguments, "max_epochs": 1}
    trainer = pl.Trainer(**arguments, default_root_dir=root / "run", logger=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=MVTecDataModule(root=data, category="demo", num_workers=0))
    return Path(trainer.checkpoint_callback.best_model_path)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of quick fits (64x64, random weights), made on first use per model."""
    made: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> Path:
            made[name] = _fit_checkpoint(tmp_path_factory.mktemp(name), name)
            return made[name]

    return Lazy()


def _real_arguments(args: list[str], checkpoints: dict[str, Path], where: str) -> list[str]:
    """Placeholders replaced with real files, for a run that executes the command."""
    model = "stfpm" if any("stfpm" in a.lower() for a in args) else "padim"
    values = {}
    result = []
    for arg in args:
        for placeholder in re.findall(r"<[^<>\s]+>", arg):
            if placeholder not in PLACEHOLDERS:
                pytest.fail(f"{where}: placeholder {placeholder} has no value for a real run; add it to PLACEHOLDERS")
            template = PLACEHOLDERS[placeholder]
            if "{checkpoint}" in template and "checkpoint" not in values:
                values["checkpoint"] = str(checkpoints[model])
            if "{model_xml}" in template and "model_xml" not in values:
                values["model_xml"] = str(_export(checkpoints[model]))
            arg = arg.replace(placeholder, template.format(**values))
        result.append(arg)
    return result


def _export(checkpoint: Path) -> Path:
    from otx_anomaly.deploy.export import export_model
    from otx_anomaly.models.checkpoints import load_model

    target = checkpoint.parent / "docs_test_export" / "model.xml"
    return target if target.is_file() else export_model(load_model(checkpoint), target.parent)


class _Parsed(BaseException):  # noqa: N818 - not an error: BaseException passes `except Exception` handlers
    """Raised right after an argparse parser succeeded: the command is checked, not run."""


@contextlib.contextmanager
def _parse_only(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    """Parsers stop with ``_Parsed`` once the arguments are parsed and checked (argparse's and
    jsonargparse's: the non-Lightning subcommands use either)."""
    import jsonargparse

    depth = [0]
    with monkeypatch.context() as patch:
        for parser_class in (argparse.ArgumentParser, jsonargparse.ArgumentParser):
            def parse_args(self, *args, _original=parser_class.parse_args, **kwargs):  # noqa: ANN001, ANN202
                depth[0] += 1
                try:
                    parsed = _original(self, *args, **kwargs)
                finally:
                    depth[0] -= 1
                if depth[0] == 0:
                    raise _Parsed(parsed)
                return parsed

            patch.setattr(parser_class, "parse_args", parse_args)
        yield


def _run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from otx_anomaly.__main__ import main

    try:
        with mock.patch.object(sys, "argv", sys.argv[:1]):  # pytest's own arguments are not the command's
            code = main(args)
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _check_otx_command(args, where, capsys, monkeypatch) -> None:  # noqa: ANN001
    if args[:1] and args[0] in LIGHTNING_SUBCOMMANDS:
        code, output = _run_cli([*args, "--print_config"], capsys)
        assert code == 0, f"{where}: `{shlex.join(args)}` is rejected by the parser:\n{output[-3000:]}"
        return
    try:
        with _parse_only(monkeypatch):
            code, output = _run_cli(args, capsys)
    except _Parsed:
        return
    assert code == 0, f"{where}: `{shlex.join(args)}` is rejected by the parser:\n{output[-3000:]}"


_HELP: dict[tuple[str, ...], str] = {}


def _check_benchmark(command: list[str], where: str) -> None:
    """``python -m benchmarks SUBCOMMAND --option ...``: the subcommand's help names every option."""
    args = command[3:]
    subcommand = tuple(args[: next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))])
    if subcommand not in _HELP:
        result = subprocess.run([sys.executable, "-m", "benchmarks", *subcommand, "--help"], capture_output=True,
                                text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, f"{where}: `{shlex.join(command[:3 + len(subcommand)])} --help` failed:\n" \
                                       f"{result.stderr[-2000:]}"
        _HELP[subcommand] = result.stdout
    options = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    unknown = sorted(option for option in options if not re.search(rf"{re.escape(option)}\b", _HELP[subcommand]))
    assert not unknown, f"{where}: `python -m benchmarks {' '.join(subcommand)}` has no option(s) {unknown}"


def _check_pip(command: list[str], where: str) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[-1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+) *=", section, re.M))
    for arg in command:
        match = re.fullmatch(r"\.\[([\w,-]+)\]", arg)
        if match:
            missing = set(match.group(1).split(",")) - extras
            assert not missing, f"{where}: pyproject.toml has no extra(s) {sorted(missing)}"


def _is_tool(command: list[str]) -> bool:
    name = command[0]
    if name == "python" and command[1:2] == ["-m"]:
        name = command[2]
    return name in NOT_RUN


# --- the tests -------------------------------------------------------------------------------------


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: "
                                            "move details to docs/")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_tells_no_history(page):
    text = GENERATED.sub(lambda match: "\n" * match.group(0).count("\n"), page.read_text(encoding="utf-8"))
    hits = [f"{page.relative_to(ROOT)}:{number}: {line.strip()}" for number, line in enumerate(text.splitlines(), 1)
            if HISTORY.search(line)]
    assert not hits, "say what is, not how it came to be:\n" + "\n".join(hits)


def test_every_block_has_a_known_language():
    unknown = [f"{b.where} ({b.lang})" for b in ALL_BLOCKS if b.lang not in CODE_LANGS | TEXT_LANGS]
    assert not unknown, f"code blocks of a language this test does not check: {unknown}"
    assert any(b.lang == "python" for b in ALL_BLOCKS) and COMMANDS, "no examples found: is the docs folder there?"


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w} {' '.join(c)[:60]}" for w, c in COMMANDS])
def test_shell_command(where, command, capsys, monkeypatch, workdir):
    args = _otx_args(command)
    if args is not None:
        _check_otx_command(args, where, capsys, monkeypatch)
    elif command[:2] == ["python", "-m"] and command[2:4] == ["pip", "install"] or command[:2] == ["pip", "install"]:
        _check_pip(command, where)
    elif command[:3] == ["python", "-m", "benchmarks"]:
        _check_benchmark(command, where)
    else:
        assert _is_tool(command), (f"{where}: `{shlex.join(command)}` is a command this test does not know how to "
                                   "check; teach tests/test_docs_examples.py, or mark the block skip with a reason")


PYTHON_PAGES = sorted({b.page for b in ALL_BLOCKS if b.lang in ("python", "py") and not b.skip})


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.slow) if (p.name in SLOW_PAGES and p.parent == ROOT)
     or SLOW_MARK in p.read_text(encoding="utf-8") else p for p in PYTHON_PAGES],
    ids=[str(p.relative_to(ROOT)) for p in PYTHON_PAGES],
)
def test_python_examples(page, workdir):
    namespace = {"__name__": "__docs_example__"}
    for block in read_blocks(page):
        if block.lang not in ("python", "py") or block.skip:
            continue
        # Leading newlines make traceback line numbers those of the Markdown file.
        exec(compile("\n" * (block.line - 1) + block.code, str(block.page), "exec"), namespace)  # noqa: S102


YAML_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("yaml", "yml") and not b.skip]


def _class_specs(node):  # noqa: ANN001, ANN202
    if isinstance(node, dict):
        if "class_path" in node:
            yield node
        for value in node.values():
            yield from _class_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _class_specs(value)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=_ids(YAML_BLOCKS))
def test_yaml_example(block, workdir):
    from jsonargparse._util import import_object

    config = yaml.safe_load(block.code)
    for spec in _class_specs(config):
        import_object(spec["class_path"])(**(spec.get("init_args") or {}))


JSON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "json" and not b.skip]


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=_ids(JSON_BLOCKS))
def test_json_example(block):
    json.loads(block.code)


def _reference_modules() -> list[str]:
    names = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        names += re.findall(r"^::: *([\w.]+)", page.read_text(encoding="utf-8"), re.M)
    return names


def _doctests() -> list[doctest.DocTest]:
    finder, tests, seen = doctest.DocTestFinder(), [], set()
    for name in _reference_modules():
        module = importlib.import_module(name)
        objects = [module, *(getattr(module, attr) for attr in getattr(module, "__all__", []))]
        for obj in objects:
            home = sys.modules.get(getattr(obj, "__module__", None) or name, module)
            for test in finder.find(obj, getattr(obj, "__qualname__", name), module=home, globs=vars(home)):
                if test.examples and test.name not in seen:
                    seen.add(test.name)
                    tests.append(test)
    return tests


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = _doctests()
    failures = []
    for test in tests:
        test.globs = dict(test.globs)
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, f"docstring example of {test.name} failed:\n{''.join(failures)}"
    assert tests, "no docstring examples found"


# The demo's own test (tests/test_cli.py) runs it for real; here its flags are parsed.
REAL_RUNS = list({tuple(command): (where, command) for where, command in COMMANDS
                  if _otx_args(command) and _otx_args(command)[:1] != ["demo"]}.values())


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), REAL_RUNS,
                         ids=lambda value: value if isinstance(value, str) else " ".join(value)[:60])
def test_shell_command_runs(where, command, capsys, workdir, checkpoints):
    """The commands for real, made small: demo data, 64x64 images, at most 2 epochs, one process."""
    args = _real_arguments(_otx_args(command), checkpoints, where)
    subcommand = args[0]
    if subcommand in LIGHTNING_SUBCOMMANDS:
        args += ["--data.root", str(DEMO_DATA), "--data.category", "demo", "--data.init_args.num_workers", "0",
                 "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(workdir / "results"),
                 "--trainer.logger", "false", "--trainer.strategy", "auto", "--trainer.devices", "1",
                 "--trainer.num_nodes", "1"]  # DDP would relaunch pytest in each process
        if "--ckpt_path" not in args:
            args += ["--model.init_args.image_size", "[64, 64]"]
            if any("tile" in arg for arg in args):  # tiled: 32x32 tiles of the small images
                args += ["--model.init_args.tile_size", "32", "--model.init_args.tile_stride", "null"]
    code, output = _run_cli(args, capsys)
    assert code == 0, f"{where}: `{shlex.join(args)}` failed:\n{output[-3000:]}"
    shutil.rmtree(workdir / "results", ignore_errors=True)
