"""`report.html`: a run's chart, final metrics and config as one standalone file (plotly's JavaScript
embedded, no CDN), written by `Run.report()` and the CLI. Figure layer: plotly, no widgets.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from nbkit.figures import metrics_table_html, training_figure


def _eval_rows(run: Any) -> list[dict[str, Any]]:
    from nbkit.core.train.events import EvalEnd

    return [{"step": e.step, **e.metrics} for e in run.events if isinstance(e, EvalEnd)]


def write_report(run: Any, path: str | Path | None = None) -> Path:
    from nbkit.core.train.events import EpochEnd

    path = Path(path) if path else run.run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [e.step for e in run.events if isinstance(e, EpochEnd)]
    fig = training_figure(run.history, title=run.name, epoch_steps=epochs)
    chart = fig.to_html(full_html=False, include_plotlyjs=True)
    config_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in run.config.items()
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nbkit run: {html.escape(run.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px}}
td,th{{border:1px solid #ddd;padding:2px 8px;text-align:left}}</style></head>
<body><h1>{html.escape(run.name)}</h1>
<p>status: <b>{html.escape(run.status)}</b> &middot; run directory: <code>{html.escape(str(run.run_dir))}</code></p>
{chart}
<h2>Evaluations</h2>{metrics_table_html(_eval_rows(run), max_rows=1000)}
<h2>Config</h2><table>{config_rows}</table>
</body></html>"""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    from nbkit.core.train.trackers import log_report

    log_report(run.run_dir, path)  # next to the run in MLflow too, when the run reports there
    return path
