"""The gallery: `index.html` beside the outputs, to look at a run's images without any server.

Everything it shows comes from the result records and `report.summarize`; every value is escaped
because prompts and gateway messages are user or third-party text.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote

from nanobanana_cli.report import Result, Summary, advice, human_bytes, milliseconds, percent, retry_causes

GALLERY_FILE = "index.html"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table.totals{border-collapse:collapse;margin-bottom:1rem}
.totals td,.totals th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
.totals th:first-child,.totals td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:1rem}
.job{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem;overflow-wrap:anywhere}
.job img{width:100%;height:auto;border-radius:4px;display:block}
.job.failed{border-color:#d33}
.error{background:#fee;color:#900;padding:.4rem;border-radius:4px;white-space:pre-wrap}
.errors{color:#900}.prompt{margin:.4rem 0;white-space:pre-wrap}.meta{color:#666;font-size:12px}
.succeeded .status{color:#070}.failed .status{color:#c00}
"""


def _totals_table(summary: Summary) -> str:
    total_retries = sum(summary.retries.values())
    retries = f" · retries {total_retries} ({escape(retry_causes(summary))})" if total_retries else ""
    rows = [("all batches", summary.totals), *summary.batches.items()]
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{totals.jobs}</td><td>{totals.succeeded}</td>"
        f"<td>{totals.failed}</td><td>${totals.cost_usd:.4f}</td></tr>"
        for name, totals in rows
    )
    return (
        '<table class="totals"><tr><th>batch</th><th>jobs</th><th>succeeded</th><th>failed</th>'
        f"<th>est. cost</th></tr>{body}</table>"
        f'<p class="meta">success rate {percent(summary.success_rate)} · latency p50 '
        f"{escape(milliseconds(summary.latency_p50_ms))}, p90 {escape(milliseconds(summary.latency_p90_ms))}"
        f" · {summary.images} images ({escape(human_bytes(summary.image_bytes))})"
        + (f" · {summary.dead_letters} dead-lettered message(s)" if summary.dead_letters else "")
        + retries
        + "</p>"
        + _errors_list(summary)
    )


def _errors_list(summary: Summary) -> str:
    """Errors by type, each with its fix: the report's list, on top of the page."""
    items = "".join(
        f"<li><b>{escape(error_type)}</b> {count}"
        + (f" · fix: {escape(fix)}" if (fix := advice(error_type)) else "")
        + "</li>"
        for error_type, count in summary.errors.items()
    )
    return f'<ul class="errors">{items}</ul>' if items else ""


def _job_card(result: Result) -> str:
    record = result.record
    status = "succeeded" if result.succeeded else "failed"
    images = "".join(
        f'<a href="{escape(quote(path))}"><img src="{escape(quote(path))}" alt="{escape(result.id)}"></a>'
        for path in result.images
    )
    error = result.error
    error_html = (
        f'<div class="error"><b>{escape(str(error.get("type")))}</b>: '
        f"{escape(str(error.get('message')))}</div>"
        if error
        else ""
    )
    prompt = record.get("prompt") or (record.get("source") or {}).get("key") or ""
    latency = record.get("latency_ms")
    return (
        f'<div class="job {status}" id="{escape(result.batch)}/{escape(result.id)}">{images}{error_html}'
        f'<div class="prompt">{escape(str(prompt))}</div>'
        f'<div class="meta"><b>{escape(result.id)}</b> · <span class="status">{status}</span>'
        f" · attempts {escape(str(record.get('attempts', '-')))}"
        f" · {escape(milliseconds(None if latency is None else float(latency)))}"
        f" · ${float(record.get('cost_usd') or 0.0):.4f}</div></div>"
    )


def render(summary: Summary) -> str:
    sections = []
    for batch in summary.batches:
        cards = "".join(_job_card(result) for result in summary.results if result.batch == batch)
        sections.append(f'<h2>{escape(batch)}</h2><div class="grid">{cards}</div>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Nano Banana run</title>"
        f"<style>{_CSS}</style></head><body><h1>Nano Banana run</h1>"
        f"{_totals_table(summary)}{''.join(sections)}</body></html>\n"
    )


def write_gallery(out_dir: Path, summary: Summary) -> Path:
    """Write `out_dir/index.html`; image links are relative so the folder can be moved or zipped."""
    path = out_dir / GALLERY_FILE
    path.write_text(render(summary), encoding="utf-8")
    return path
