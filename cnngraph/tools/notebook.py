"""Jupyter: a compiled model shown as its forward graph and its summary table, and a
progress bar for training from the Python API.

    from cnngraph.tools import notebook
    notebook.register()          # compiled models now display themselves
    model                        # the forward graph (SVG) and the summary table
    notebook.show(model)         # the same, without registering
    result = run_experiment(model, out="runs/nb", config={"epochs": 1}, limit_train=2000,
                            report=notebook.ProgressBar())

Training from a notebook goes through `experiment.run_experiment`, the entry
``run`` and ``sweep`` use (compile, data, checks, training, outputs): this module
only shows a model and reports progress.

The display lives here, not on `Model`: the compiler comes before the tools
(imports flow one way), so ``register`` (or ``%load_ext cnngraph.tools.notebook``)
tells IPython how to draw a `Model` instead.  The graph is rendered by Graphviz's
``dot`` when it is installed; otherwise the display says so and shows the DOT text.
`ProgressBar` uses tqdm (``tqdm.auto``: a widget in notebooks, a line on terminals
and pipes) when it is importable, else prints one line per epoch.  Neither IPython
nor tqdm is needed to import this module.
"""
from __future__ import annotations

import html
import shutil
import subprocess
import sys

from ..compiler.program import Model
from ..training.loop import Progress
from .dot import shape_text, to_dot
from .experiment import Evaluated
from .summary import format_summary, summarize


def graph_svg(model: Model) -> str | None:
    """The forward graph as SVG text, or None when Graphviz's ``dot`` is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    done = subprocess.run([exe, "-Tsvg"], input=_dot(model).encode(), capture_output=True,
                          check=False)
    if done.returncode != 0:
        return None
    svg = done.stdout.decode(errors="replace")
    return svg[svg.find("<svg"):] if "<svg" in svg else None  # drop the XML prologue


def _dot(model: Model) -> str:
    return to_dot(model.graph, model.registry, title=_title(model))


def _title(model: Model) -> str:
    return f"{model.file}: forward graph"


def summary_html(model: Model) -> str:
    """The summary (one row per layer: output shape, parameters, multiply-adds) as an
    HTML table."""
    rows = summarize(model)
    cells = []
    for r in rows:
        params = "<br>".join(f"{html.escape(n)} {shape_text(s)}" for n, s in r.params)
        cells.append(f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.kind)}</td>"
                     f"<td>{shape_text(r.output[1:])}</td><td style='text-align:right'>"
                     f"{r.param_count:,}</td><td style='text-align:right'>{r.macs:,}</td>"
                     f"<td>{params}</td></tr>")
    total = (f"<tr><th colspan=3>total</th><th style='text-align:right'>"
             f"{sum(r.param_count for r in rows):,}</th><th style='text-align:right'>"
             f"{sum(r.macs for r in rows):,}</th><th></th></tr>")
    return ("<table class='cnngraph-summary'><thead><tr><th>layer</th><th>kind</th>"
            "<th>output</th><th>parameters</th><th>mult-adds</th><th>arrays</th></tr></thead>"
            f"<tbody>{''.join(cells)}{total}</tbody></table>")


def summary_text(model: Model) -> str:
    return format_summary(model, summarize(model))


def model_html(model: Model) -> str:
    """The forward graph (inline SVG, or the DOT text and a note when Graphviz is
    missing) above the summary table."""
    svg = graph_svg(model)
    if svg is not None:
        graph = f"<div class='cnngraph-graph'>{svg}</div>"
    else:
        graph = ("<p><i>Graphviz's <code>dot</code> is not installed, so the graph is shown "
                 "as DOT text (Debian: <code>apt-get install graphviz</code>).</i></p>"
                 f"<details><summary>forward graph (DOT)</summary><pre>{html.escape(_dot(model))}"
                 "</pre></details>")
    return (f"<div class='cnngraph-model'><h4>{html.escape(model.file)}</h4>"
            f"{graph}{summary_html(model)}</div>")


class ModelView:
    """What `show` returns: Jupyter draws it as HTML (graph and table), SVG (the
    graph) or text (the summary)."""

    def __init__(self, model: Model):
        self.model = model

    def _repr_html_(self) -> str:
        return model_html(self.model)

    def _repr_svg_(self) -> str | None:
        return graph_svg(self.model)

    def __repr__(self) -> str:
        return f"{self.model.file}\n{summary_text(self.model)}"


def show(model: Model) -> ModelView:
    """A displayable view of ``model``: the last expression of a cell, or
    ``IPython.display.display(show(model))``."""
    return ModelView(model)


def load_ipython_extension(ipython) -> None:
    """``%load_ext cnngraph.tools.notebook``: compiled models display as graph and table."""
    formatters = ipython.display_formatter.formatters
    formatters["text/html"].for_type(Model, model_html)
    formatters["text/plain"].for_type(
        Model, lambda model, printer, cycle: printer.text(repr(ModelView(model))))


def register() -> bool:
    """Register the display with the running IPython, if any; True when it was."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    load_ipython_extension(shell)
    return True


class ProgressBar:
    """A ``report`` callback for `Trainer` and `run_experiment`: one tqdm bar per
    epoch (batches done, running loss, images/s) when tqdm is importable, else one
    printed line per epoch.  ``losses`` keeps every (epoch, step, running loss)
    reported, for a curve within epochs; ``use_tqdm=False`` forces the lines."""

    def __init__(self, use_tqdm: bool | None = None, file=None):
        self.tqdm = _tqdm() if use_tqdm is not False else None
        if use_tqdm and self.tqdm is None:
            raise ImportError("ProgressBar(use_tqdm=True) needs tqdm: pip install tqdm")
        self.file = file
        self.bar = None
        self.losses: list[tuple[int, int, float]] = []

    def __call__(self, event) -> None:
        if isinstance(event, Progress):
            self.losses.append((event.epoch, event.step, event.loss))
            if self.tqdm is None:
                return
            if self.bar is None:
                self.bar = self.tqdm(total=event.steps, unit="batch", file=self.file,
                                     desc=f"epoch {event.epoch}/{event.epochs}")
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}",
                                 images_per_s=f"{event.images_per_s:,.0f}")
        elif isinstance(event, dict) and "train_loss" in event:
            self.close()
            val = "" if event["val_error"] is None else \
                f"  val error {100 * event['val_error']:.2f}%"
            print(f"epoch {event['epoch']:>3}  loss {event['train_loss']:.4f}  train error "
                  f"{100 * event['train_error']:.2f}%{val}  {event['seconds']:.1f}s",
                  file=self.file or sys.stdout, flush=True)
        elif isinstance(event, Evaluated):
            self.close()
            print(f"test error {100 * event.error:.2f}% on {event.images} images",
                  file=self.file or sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm
