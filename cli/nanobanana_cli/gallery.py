"""The gallery: `index.html` beside the outputs, one offline file to look at a run on a desk or a phone.

Everything it shows comes from the run's `Summary`, the numbers the terminal printed. Prompts and gateway
messages are strangers' text: every value is escaped, and a Content-Security-Policy lets only the page's
own inline script run (by its hash), which filters the cards by reading their data attributes and never
writes markup. Thumbnails load lazily; each links to its full-size image and its result record.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nanobanana_cli.report import Result, Summary, advice, human_bytes, milliseconds, percent, retry_causes

GALLERY_FILE = "index.html"

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:1400px;color:#1d1d1f;
background:#f6f6f4}
h1{font-size:1.35rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.6rem 0 .6rem}
.facts{color:#555;margin:.2rem 0 .8rem}.facts b{color:#1d1d1f;font-weight:600}
.totals{border-collapse:collapse;width:100%;max-width:640px;font-size:14px;background:#fff}
.totals td,.totals th{border:1px solid #ddd;padding:.3rem .45rem;text-align:right}
.totals th:first-child,.totals td:first-child{text-align:left;overflow-wrap:anywhere}
.failures{background:#fff;border:1px solid #e5b5b5;border-radius:8px;padding:.4rem .9rem;margin:.8rem 0}
.failures li{margin:.35rem 0}.fix{color:#555}.failures a{color:#a00}
.controls{position:sticky;top:0;z-index:1;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;
background:#f6f6f4;padding:.6rem 0;margin-top:.6rem}
.controls input,.controls select{font:inherit;padding:.35rem .5rem;border:1px solid #bbb;border-radius:6px;
background:#fff;min-width:0}
.controls input{flex:1 1 12rem}#shown{color:#555;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,220px),1fr));gap:.8rem}
.job{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.55rem;overflow-wrap:anywhere;
min-width:0}
@media (max-width:600px){.grid{grid-template-columns:1fr 1fr;gap:.5rem}body{padding:.7rem}}
.job.failed{border-color:#d55}
.thumb{display:block;aspect-ratio:1;background:#eee;border-radius:5px;overflow:hidden}
.thumb img{width:100%;height:100%;object-fit:contain;display:block}
.noimage{display:flex;align-items:center;justify-content:center;aspect-ratio:1;background:#fbeaea;
color:#a00;border-radius:5px;font-weight:600}
.error{color:#900;margin:.4rem 0;white-space:pre-wrap}
.warning{color:#8a5a00;margin:.4rem 0}
.prompt{margin:.4rem 0;white-space:pre-wrap}.meta{color:#666;font-size:12.5px}
.status{font-weight:600}.succeeded .status{color:#070}.failed .status{color:#c00}
.job a{color:#245}
"""

#: Filters the cards by their data attributes; it reads no page text and writes only `hidden` and a count.
_SCRIPT = """
(function () {
  var search = document.getElementById("search"), status = document.getElementById("status");
  var error = document.getElementById("error"), shown = document.getElementById("shown");
  var cards = Array.prototype.slice.call(document.querySelectorAll(".job"));
  function apply() {
    var text = search.value.trim().toLowerCase(), count = 0;
    cards.forEach(function (card) {
      var keep = (!status.value || card.dataset.status === status.value) &&
        (!error.value || card.dataset.error === error.value) &&
        (!text || card.dataset.search.indexOf(text) >= 0);
      card.hidden = !keep;
      if (keep) { count += 1; }
    });
    shown.textContent = count + " of " + cards.length + " shown";
  }
  search.addEventListener("input", apply);
  status.addEventListener("change", apply);
  error.addEventListener("change", apply);
  apply();
})();
"""


def _csp() -> str:
    """Only this page's own script (by its hash), its own style, and images from beside it."""
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    return (
        "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def _href(path: str) -> str:
    return escape(quote(path))


def _prompt(record: dict[str, Any]) -> str:
    return str(record.get("prompt") or (record.get("source") or {}).get("key") or "")


def _line(result: Result) -> int | None:
    line = (result.record.get("source") or {}).get("line")
    return line if isinstance(line, int) else None


def _order(result: Result) -> tuple[str, int, int, str]:
    """Cards in file order: by batch, then line (jobs sent over SQS, which have none, after), then id."""
    line = _line(result)
    return (result.batch, line is None, line or 0, result.id)


def _error_type(result: Result) -> str:
    return str(result.error.get("type")) if result.error else ""


def _error_text(result: Result) -> str:
    """The job's own error message, without the fix that the failures list states once per type."""
    if result.error is None:
        return ""
    message = str(result.error.get("message") or "")
    fix = advice(_error_type(result))
    return message.removesuffix(f"; {fix}") if fix else message


def _header(summary: Summary) -> str:
    run = summary.run
    facts = [
        (label, run[key])
        for label, key in (("run", "started_at"), ("model", "model"), ("gateway", "gateway"))
        if run.get(key)
    ]
    if run.get("dialect"):
        facts.append(("dialect", run["dialect"]))
    shown = " · ".join(f"{escape(label)} <b>{escape(value)}</b>" for label, value in facts)
    jobs = summary.succeeded + summary.failed
    totals = (
        f"<b>{jobs}</b> jobs: <b>{summary.succeeded}</b> succeeded, <b>{summary.failed}</b> failed"
        f" · success {escape(percent(summary.success_rate))}"
        f" · est. cost <b>${summary.totals.cost_usd:.4f}</b>"
        f" · latency p50 {escape(milliseconds(summary.latency_p50_ms))},"
        f" p90 {escape(milliseconds(summary.latency_p90_ms))}"
        f" · {summary.images} images ({escape(human_bytes(summary.image_bytes))})"
    )
    retries = sum(summary.retries.values())
    if retries:
        totals += f" · retries {retries} ({escape(retry_causes(summary))})"
    if summary.dead_letters:
        totals += f" · {summary.dead_letters} dead-lettered message(s), counted in the jobs"
    return f'<p class="facts">{shown}</p><p class="facts">{totals}</p>'


def _totals_table(summary: Summary) -> str:
    rows = [("all batches", summary.totals), *summary.batches.items()] if len(summary.batches) > 1 else []
    rows = rows or list(summary.batches.items())
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{totals.jobs}</td><td>{totals.succeeded}</td>"
        f"<td>{totals.failed}</td><td>${totals.cost_usd:.4f}</td></tr>"
        for name, totals in rows
    )
    return (
        '<table class="totals"><tr><th>batch</th><th>jobs</th><th>ok</th><th>failed</th>'
        f"<th>est. cost</th></tr>{body}</table>"
    )


def _failures(results: list[Result]) -> str:
    """Failed jobs grouped by error type, the fix said once for each type."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        if not result.succeeded:
            groups.setdefault(_error_type(result) or "unknown", []).append(result)
    if not groups:
        return ""
    items = []
    for error_type, failed in sorted(groups.items(), key=lambda item: -len(item[1])):
        fix = advice(error_type)
        links = ", ".join(
            f'<a href="#{_href(_card_id(result))}">{escape(_label(result))}</a>' for result in failed
        )
        items.append(
            f"<li><b>{escape(error_type)}</b> · {len(failed)} job(s)"
            + (f' · <span class="fix">fix: {escape(fix)}</span>' if fix else "")
            + f"<br>{links}</li>"
        )
    return f'<div class="failures"><h2>Failures</h2><ul>{"".join(items)}</ul></div>'


def _card_id(result: Result) -> str:
    return f"{result.batch}/{result.id}"


def _label(result: Result) -> str:
    line = _line(result)
    return f"{result.batch} line {line}" if line is not None else f"{result.batch}/{result.id}"


def _controls(results: list[Result]) -> str:
    types = sorted({_error_type(result) for result in results} - {""})
    options = "".join(f'<option value="{escape(t)}">{escape(t)}</option>' for t in types)
    return (
        '<div class="controls">'
        '<input id="search" type="search" placeholder="Search prompt or id" aria-label="Search prompt or id">'
        '<select id="status" aria-label="Status"><option value="">all statuses</option>'
        '<option value="succeeded">succeeded</option><option value="failed">failed</option></select>'
        f'<select id="error" aria-label="Error type"><option value="">all errors</option>{options}</select>'
        '<span id="shown"></span></div>'
    )


def _job_card(result: Result) -> str:
    record = result.record
    status = "succeeded" if result.succeeded else "failed"
    prompt = _prompt(record)
    images = (
        "".join(
            f'<a class="thumb" href="{_href(path)}" title="full size">'
            f'<img src="{_href(path)}" loading="lazy" decoding="async" alt="{escape(result.id)}"></a>'
            for path in result.images
        )
        or f'<div class="noimage">{escape(status)}</div>'
    )
    error_type = _error_type(result)
    error_html = (
        f'<div class="error"><b>{escape(error_type)}</b>: {escape(_error_text(result))}</div>'
        if result.error
        else ""
    )
    warnings = record.get("warnings")
    error_html += "".join(
        f'<div class="warning">{escape(str(warning))}</div>'
        for warning in (warnings if isinstance(warnings, list) else [])
    )
    line = _line(result)
    where = f"line {line} · " if line is not None else ""
    latency = record.get("latency_ms")
    record_path = f"{result.batch}/{result.id.removesuffix('.json')}.json"
    search = f"{result.id} {prompt}".lower()
    return (
        f'<article class="job {status}" id="{escape(_card_id(result))}" data-status="{status}"'
        f' data-error="{escape(error_type)}" data-search="{escape(search)}">{images}{error_html}'
        f'<div class="prompt">{escape(prompt)}</div>'
        f'<div class="meta">{where}<b>{escape(result.id)}</b> · <span class="status">{status}</span>'
        f" · attempts {escape(str(record.get('attempts', '-')))}"
        f" · {escape(milliseconds(None if latency is None else float(latency)))}"
        f" · ${float(record.get('cost_usd') or 0.0):.4f}"
        f' · <a href="{_href(record_path)}">record</a></div></article>'
    )


def render(summary: Summary) -> str:
    results = sorted(summary.results, key=_order)
    sections = []
    for batch in dict.fromkeys(result.batch for result in results):
        cards = "".join(_job_card(result) for result in results if result.batch == batch)
        sections.append(f'<section><h2>{escape(batch)}</h2><div class="grid">{cards}</div></section>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_csp())}">'
        "<title>Nano Banana run</title>"
        f"<style>{_CSS}</style></head><body><h1>Nano Banana run</h1>"
        f"{_header(summary)}{_totals_table(summary)}{_failures(results)}{_controls(results)}"
        f"{''.join(sections)}<script>{_SCRIPT}</script></body></html>\n"
    )


def write_gallery(out_dir: Path, summary: Summary) -> Path:
    """Write `out_dir/index.html`; image links are relative so the folder can be moved or zipped."""
    path = out_dir / GALLERY_FILE
    path.write_text(render(summary), encoding="utf-8")
    return path
