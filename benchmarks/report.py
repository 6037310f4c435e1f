"""Where the benchmarks' tables go: generated sections of ``docs/benchmarks.md`` and README's summary.

A section lies between ``<!-- BEGIN key -->`` and ``<!-- END key -->``; writing it again replaces
only what lies between its markers, so the prose around it stays as written. Tables whose figures
depend on the CPU (speed) are one section per kind of CPU (:attr:`Machine.kind`, the instruction
set that decides OpenVINO's INT8 kernels) inside a group section: a run on another kind of CPU adds
its table beside the others and replaces only its own.

Every section opens with the command that wrote it, the date, the machine (:class:`Machine`) and
the library versions, and keeps the figures README's summary needs in a one-line comment
(``<!-- summary {...} -->``), so that the summary is written again from whichever sections exist.

Example:
    >>> text = replace_section("intro\\n", "quality", "| a |")
    >>> replace_section(text, "quality", "| b |").count("BEGIN quality")
    1
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

#: The repository root: the default ``--output`` and ``--readme`` are relative to it.
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
#: README's section, written from the summaries of the docs' sections.
SUMMARY_KEY = "benchmark-summary"
#: The kinds of CPU, most capable first: the first whose flags a CPU has names it (INT8 dot products
#: in AMX tiles, AVX-512 VNNI, AVX-VNNI; AVX2 has none, so INT8 gains least there).
CPU_KINDS = (("AMX", "amx_int8"), ("AVX-512 VNNI", "avx512_vnni"), ("AVX-VNNI", "avx_vnni"), ("AVX2", "avx2"))
VERSIONED = ("torch", "lightning", "anomalib", "openvino", "nncf")
_SUMMARY = re.compile(r"^<!-- summary (?P<data>\{.*\}) -->$", re.M)


@dataclass(frozen=True)
class Machine:
    """The CPU and libraries a table was measured with: figures mean little without them.

    Args:
        cpu: the model name, with family and model numbers where ``/proc/cpuinfo`` gives them.
        cores: logical cores.
        isa: the instruction-set flags that decide OpenVINO's kernels, after any cap.
        kind: the first of :data:`CPU_KINDS` the CPU has (``other``: none; ``unknown``: no flags, as off Linux).
        openvino: OpenVINO's ``OPTIMIZATION_CAPABILITIES`` for the CPU.
        precision: OpenVINO's default ``INFERENCE_PRECISION_HINT`` (the product compiles FP32 models in f32).
        cap: the ISA cap variables set in the environment, as ``NAME=value``.
        versions: ``name version`` of each of :data:`VERSIONED`.
    """

    cpu: str
    cores: int
    isa: str
    kind: str
    openvino: str
    precision: str
    cap: str
    versions: str

    @classmethod
    def here(cls) -> Machine:
        """This machine, as the product's quantization sees its CPU (``otx_anomaly.deploy.speed.cpu_model``)."""
        from importlib.metadata import PackageNotFoundError, version

        import openvino as ov

        from otx_anomaly.deploy.speed import ISA_FLAGS, cpu_model

        name, flags = cpu_model()
        core = ov.Core()
        try:
            capabilities = " ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            hint = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
            precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        except RuntimeError:
            capabilities = precision = "unknown"
        versions = []
        for package in VERSIONED:
            try:
                versions.append(f"{package} {version(package)}")
            except PackageNotFoundError:
                versions.append(f"{package} (not installed)")
        cap = " ".join(f"{v}={os.environ[v]}" for v in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OV_CPU_MAX_ISA")
                       if os.environ.get(v))
        kind = next((kind for kind, flag in CPU_KINDS if flag in flags), "other" if flags else "unknown")
        return cls(cpu=name, cores=os.cpu_count() or 1, isa=" ".join(f for f in ISA_FLAGS if f in flags) or "unknown",
                   kind=kind, openvino=capabilities, precision=precision, cap=cap, versions=", ".join(versions))

    def describe(self) -> str:
        """One line: CPU, cores, ISA (and its cap), OpenVINO's view of the CPU, library versions."""
        capped = f" (kernels capped: {self.cap})" if self.cap else ""
        return (f"{self.cpu}, {self.cores} cores; ISA {self.isa}{capped}; OpenVINO {self.openvino}, default "
                f"inference precision {self.precision}; {self.versions}")


def command_line(subcommand: str, argv: list[str]) -> str:
    """The command as a reader types it again from the repository root.

    Args:
        subcommand: the benchmark's subcommand.
        argv: its arguments.
    """
    return shlex.join(["python", "-m", "benchmarks", subcommand, *argv])


def header(command: str, machine: Machine) -> str:
    """The first line of every section: which command wrote it, when, and on what."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"Written by `{command}` on {date}: {machine.describe()}."


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure, or an em dash where there is none."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(columns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table.

    Args:
        columns: the header.
        rows: the cells, as text.
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def summary_comment(data: dict) -> str:
    """The figures README's summary takes from a section, as a one-line comment (no ``--`` inside)."""
    data = {**data, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}
    encoded = json.dumps(data, sort_keys=True).replace("--", "-\\u002d")  # the same JSON string, read back
    return f"<!-- summary {encoded} -->"


def _markers(key: str) -> tuple[str, str]:
    return f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"


def _span(text: str, key: str) -> tuple[int, int] | None:
    """Where the content between ``key``'s markers starts and ends; ``None`` without both markers."""
    begin, end = _markers(key)
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    return (start + len(begin), stop) if stop >= 0 else None


def replace_section(text: str, key: str, body: str) -> str:
    """``text`` with ``body`` between ``key``'s markers, appended as a new section where they are missing.

    Args:
        text: the Markdown file's text.
        key: the section's name.
        body: its new content.
    """
    span = _span(text, key)
    if span is None:
        begin, end = _markers(key)
        return f"{text.rstrip()}\n\n{begin}\n{body.strip()}\n{end}\n"
    return f"{text[:span[0]]}\n{body.strip()}\n{text[span[1]:]}"


def replace_in_group(text: str, group: str, key: str, body: str) -> str:
    """``text`` with ``key``'s section inside ``group``'s (one per kind of CPU): replaced where it is
    there, else added after the group's other sections. Text in the group outside its sections (a
    placeholder sentence) goes.

    Args:
        text: the Markdown file's text.
        group: the group's section name (``speed``).
        key: the section's name (``speed AVX2``).
        body: its new content.
    """
    span = _span(text, group)
    inner = text[span[0]:span[1]] if span else ""
    pattern = re.compile(r"<!-- BEGIN (?P<key>[^>]+?) -->\n.*?<!-- END (?P=key) -->", re.S)
    sections = {m.group("key"): m.group(0) for m in pattern.finditer(inner)}
    begin, end = _markers(key)
    sections[key] = f"{begin}\n{body.strip()}\n{end}"
    return replace_section(text, group, "\n\n".join(sections.values()))


def summaries(text: str) -> list[dict]:
    """The summary figures every section of ``text`` keeps."""
    return [json.loads(m.group("data")) for m in _SUMMARY.finditer(text)]


def summary_table(found: list[dict]) -> str:
    """README's table: image and pixel AUROC beside anomalib's (``quality``) and the INT8 speed-up
    over FP32 on each kind of CPU (``speed``), one row per dataset and model.

    Args:
        found: what :func:`summaries` read from the docs.
    """
    quality = next((s for s in found if s["kind"] == "quality"), None)
    speeds = [s for s in found if s["kind"] == "speed"]
    keys = list(dict.fromkeys([*(quality or {}).get("rows", {}), *(k for s in speeds for k in s["rows"])]))
    columns = ["dataset", "model"]
    if quality:
        columns += ["image AUROC (anomalib)", "pixel AUROC (anomalib)"]
    columns += [f"INT8 speed-up, {s['cpu_kind']}" for s in speeds]
    rows = []
    for key in keys:
        dataset, model = key.split(" ", 1)
        row = [dataset, model]
        if quality:
            got = quality["rows"].get(key, {})
            row += [f"{fmt(got.get('image_AUROC'))} ({fmt(got.get('anomalib_image_AUROC'))})",
                    f"{fmt(got.get('pixel_AUROC'))} ({fmt(got.get('anomalib_pixel_AUROC'))})"]
        row += [f"{fmt(s['rows'].get(key), 2)}×" if key in s["rows"] else "—" for s in speeds]
        rows.append(row)
    notes = []
    if quality:
        notes.append(f"AUROC: ours, anomalib's own model in brackets, same data split ({quality['date']}).")
    if speeds:
        cpus = "; ".join(f"{s['cpu_kind']}: {s['cpu']}, {s['date']}" for s in speeds)
        notes.append(f"INT8 speed-up: OpenVINO FP32 latency over INT8 at batch 1 ({cpus}).")
    return table(columns, rows) + "\n\n" + "\n".join(notes)


def write(output: Path | None, readme: Path | None, key: str, body: str, group: str | None = None) -> None:
    """Write one section into ``output`` (created where missing), then README's summary from every
    section there, where ``readme`` has the summary's markers.

    Args:
        output: the Markdown file (``docs/benchmarks.md``); ``None``: write nothing.
        readme: README.md; ``None``, a missing file or one without both markers: left alone.
        key: the section's name.
        body: its content.
        group: the group it belongs to (per-CPU sections); ``None``: a section of its own.
    """
    if output is None:
        return
    text = output.read_text(encoding="utf-8") if output.exists() else "# Benchmarks\n"
    text = replace_in_group(text, group, key, body) if group else replace_section(text, key, body)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    if readme is None or not readme.is_file():
        return
    current = readme.read_text(encoding="utf-8")
    found = summaries(text)
    if _span(current, SUMMARY_KEY) is not None and found:
        readme.write_text(replace_section(current, SUMMARY_KEY, summary_table(found)), encoding="utf-8")
