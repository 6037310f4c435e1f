"""``report.html``: one self-contained page to judge a prediction run (no torch, no network, no script).

Thumbnails are embedded as JPEG data; each links to its full-size overlay beside the page. The
page shows the counts and threshold, the metrics and a score histogram of normal versus anomalous
images when the truth is known (inline SVG, threshold marked), the files that could not be read,
and the images sorted by score, with wrong predictions outlined.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from urllib.parse import quote

import numpy as np

from otx_anomaly.heads import NORMALIZED_THRESHOLD
from otx_anomaly.results.records import ImageResult, PredictionRun, RunInfo

NORMAL_COLOUR = "#2e8b57"
ANOMALOUS_COLOUR = "#d1495b"
ALL_COLOUR = "#4a6fa5"

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 12px 4px 0; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.counts span { display: inline-block; margin-right: 18px; font-size: 15px; }
.anomalous { color: #b3261e; } .normal { color: #1e6b3a; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 6px; background: #fafafa; }
figure.wrong { border: 3px solid #e69f00; }
figure img { width: 100%; height: auto; display: block; background: #eee; }
figcaption { font-size: 12px; margin-top: 4px; overflow-wrap: anywhere; }
.verdict { font-weight: 600; color: #b36b00; }
svg text { font-size: 11px; fill: #333; }
"""


def _number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def histogram_svg(scores: Sequence[float], truth: Sequence[bool | None], bins: int = 20,
                  width: int = 640, height: int = 260) -> str:
    """Counts of normalized scores per bin, normal and anomalous side by side when every image's
    truth is known (else one series), with the threshold as a dashed line."""
    scores = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    split = len(truth) > 0 and all(t is not None for t in truth)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    if split:
        labels = np.asarray(truth, bool)
        series = [("normal", NORMAL_COLOUR, np.bincount(index[~labels], minlength=bins)),
                  ("anomalous", ANOMALOUS_COLOUR, np.bincount(index[labels], minlength=bins))]
    else:
        series = [("all images", ALL_COLOUR, np.bincount(index, minlength=bins))]
    left, right, top, bottom = 44, 12, 26, 34
    plot_width, plot_height = width - left - right, height - top - bottom
    peak = max(1, max(int(counts.max(initial=0)) for _, _, counts in series))
    step = plot_width / bins
    bar = step / len(series) * 0.9
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Histogram of scores">', f'<rect x="{left}" y="{top}" width="{plot_width}" '
             f'height="{plot_height}" fill="#fff" stroke="#ccc"/>']
    for tick in sorted({0, peak // 2, peak}):
        y = top + plot_height * (1 - tick / peak)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + plot_width * tick
        parts.append(f'<text x="{x:.1f}" y="{top + plot_height + 14}" text-anchor="middle">{tick:g}</text>')
    for number, (_, colour, counts) in enumerate(series):
        for position, count in enumerate(counts):
            if count:
                bar_height = plot_height * count / peak
                x = left + position * step + step * 0.05 + number * bar
                parts.append(f'<rect x="{x:.1f}" y="{top + plot_height - bar_height:.1f}" width="{bar:.1f}" '
                             f'height="{bar_height:.1f}" fill="{colour}"><title>{int(count)}</title></rect>')
    x = left + plot_width * NORMALIZED_THRESHOLD
    parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + plot_height}" stroke="#111" '
                 'stroke-width="1.5" stroke-dasharray="5,4"/>')
    parts.append(f'<text x="{x + 4:.1f}" y="{top + 8}">threshold {NORMALIZED_THRESHOLD:g}</text>')
    parts.append(f'<text x="{left + plot_width / 2:.1f}" y="{height - 4}" text-anchor="middle">normalized score'
                 '</text>')
    legend_x = left + plot_width - 10
    for number, (name, colour, counts) in enumerate(series):
        y = 8 + number * 14
        parts.append(f'<rect x="{legend_x - 110}" y="{y}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x - 96}" y="{y + 9}">{html.escape(name)} ({int(counts.sum())})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _metrics_table(run: PredictionRun) -> str:
    if not run.metrics:
        return ""
    rows = "".join(f"<tr><th>{html.escape(key)}</th><td class=number>{_number(value)}</td></tr>"
                   for key, value in run.metrics.items())
    note = ("Pixel metrics: pooled over all pixels at each image's own size." if "pixel_F1Score" in run.metrics
            else f"No pixel metrics: {html.escape(run.pixel_note)}." if run.pixel_note else "")
    return (f"<h2>Metrics ({run.metrics['images']} images with ground truth)</h2><table>{rows}</table>"
            f'<p class="muted">Image metrics use the normalized scores and labels, as <code>test</code> does. '
            f"{note}</p>")


def _unreadable_table(run: PredictionRun) -> str:
    if not run.unreadable:
        return ""
    rows = "".join(f"<tr><td>{html.escape(p.path)}</td><td>{html.escape(p.reason)}</td></tr>" for p in run.unreadable)
    return (f'<h2 id="errors">Errors: {len(run.unreadable)} file(s) could not be read and were skipped</h2>'
            f"<table><tr><th>file</th><th>reason</th></tr>{rows}</table>")


def _figure(result: ImageResult) -> str:
    prediction = result.prediction
    label = "anomalous" if prediction.pred_label else "normal"
    lines = [f'<b class="{label}">{label}</b> score {prediction.pred_score:.3f}']
    if prediction.pred_boxes is not None:
        lines[0] += f" · {len(prediction.pred_boxes)} box(es)"
    wrong = False
    if result.truth is not None:
        wrong = result.truth.anomalous != prediction.pred_label
        verdict = ("missed" if result.truth.anomalous else "false alarm") if wrong else "correct"
        lines.append(f'truth: {"anomalous" if result.truth.anomalous else "normal"} · '
                     f'<span class="{"verdict" if wrong else ""}">{verdict}</span>')
    path = prediction.image_path or result.name
    lines.append(f'<span title="{html.escape(path, quote=True)}">{html.escape(result.name)}</span>')
    source = "data:image/jpeg;base64," + base64.b64encode(result.thumbnail or b"").decode("ascii")
    image = f'<img src="{source}" alt="{html.escape(result.name, quote=True)}" loading="eager">'
    if result.overlay_file:
        image = f'<a href="{quote(result.overlay_file)}">{image}</a>'
    return (f'<figure class="{label}{" wrong" if wrong else ""}">{image}'
            f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>")


def render_report(info: RunInfo, run: PredictionRun, shown: Sequence[ImageResult], created: str) -> str:
    """The page; ``shown`` are the gallery's images (with thumbnails), highest score first."""
    total = len(run.results)
    threshold = f"score &gt; {NORMALIZED_THRESHOLD:g} is anomalous (normalized scale)"
    if info.raw_image_threshold is not None:
        threshold += f"; raw image threshold {info.raw_image_threshold:.6g}"
    if info.threshold_change:
        threshold += f" (thresholds changed after training: {info.threshold_change})"
    scores = [r.prediction.pred_score for r in run.results]
    truth = [None if r.truth is None else r.truth.anomalous for r in run.results]
    histogram = histogram_svg(scores, truth) if total else '<p class="muted">No image was predicted.</p>'
    if len(shown) < total:
        gallery_note = (f"The {len(shown)} highest-scoring of {total} images (report_max_images); every image is in "
                        "predictions.csv and predictions.jsonl.")
    else:
        gallery_note = "All images, highest score first. Click an image for its full-size overlay." if any(
            r.overlay_file for r in shown) else "All images, highest score first."
    wrong_note = " Outlined in orange: wrong against the ground truth." if any(t is not None for t in truth) else ""
    errors = f'<span><a href="#errors">{len(run.unreadable)} unreadable</a></span>' if run.unreadable else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Anomaly predictions · {total} images</title><style>{_STYLE}</style></head>
<body>
<h1>Anomaly predictions</h1>
<p class="muted">{html.escape(str(info.task))} · model {html.escape(info.model)} · {html.escape(created)}</p>
<p class="counts"><span><b>{total}</b> images</span><span class="anomalous"><b>{run.anomalous}</b> anomalous</span>
<span class="normal"><b>{total - run.anomalous}</b> normal</span>{errors}</p>
<p>Threshold: {threshold}.</p>
{_metrics_table(run)}
<h2>Scores</h2>
{histogram}
{_unreadable_table(run)}
<h2>Images</h2>
<p class="muted">{gallery_note}{wrong_note}</p>
<div class="gallery">
{"".join(_figure(result) for result in shown)}
</div>
</body></html>
"""
