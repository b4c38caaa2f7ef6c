"""Pictures across passes: one HTML page with the computation drawn before the first pass
of a pipeline and after each pass, side by side, with each pass's statistics and time.

    fedc viz algo.fed --passes inline,call-dominant,fuse-map-mean --stages -o stages.html

Each picture is embedded as a data-URI ``<img>``: inline SVGs would share
graphviz's element ids. The pictures themselves come from :mod:`fedc.viz`.
"""

from __future__ import annotations

import dataclasses
import html
import os
import pathlib
from typing import Optional, Union

from fedc.errors import FedcError
from fedc.ir.module import Module
from fedc.passes.manager import modules_differ
from fedc.viz import to_svg

__all__ = ["Stage", "pass_stages", "render_stages", "stages_html"]


@dataclasses.dataclass
class Stage:
    """The module at one stage of a pipeline: before the first pass (``name="input"``) or after
    a pass, with the statistics the pass reported, its time, and whether it changed the module."""

    name: str
    module: Module
    statistics: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    changed: bool = False


def pass_stages(module: Module, pipeline, **run_options) -> list:
    """Runs ``pipeline`` one pass at a time through :func:`fedc.passes.run`; returns the input
    and the module after each pass as :class:`Stage` s. ``run_options`` go to ``run``
    (``verify_each=False``, …)."""
    from fedc import passes
    from fedc.computation import Computation

    if isinstance(module, Computation):
        module = module.to_ir()
    steps = passes.parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    stages = [Stage("input", module)]
    for step in steps:
        result = passes.run(module, [step], **run_options)
        name, statistics = result.statistics[0]
        stages.append(Stage(name, result.module, statistics, result.timings[0][1], modules_differ(module, result.module)))
        module = result.module
    return stages


def stages_html(stages: list, symbol: Optional[str] = None, *, title: Optional[str] = None,
                costs: bool = False, pipeline: Optional[str] = None) -> str:
    """One self-contained HTML page: the picture of ``symbol`` at each stage, side by side.

    Each panel is titled with the stage (``input``, then each pass), shows the
    statistics the pass reported, whether it changed the module and how long
    it took, the picture (an SVG embedded as a ``data:`` URI, so that the
    pictures' graphviz ids cannot clash) and, folded, the textual IR. ``symbol``
    defaults to the last computation of the input.
    """
    import base64

    from fedc.ir.text import print_module

    if not stages:
        raise FedcError("no stages to draw")
    first = stages[0].module
    if symbol is None:
        if not len(first):
            raise FedcError(f"module @{first.name} has no computation to draw")
        symbol = first.symbols[-1]
    first.lookup(symbol)
    esc = html.escape
    heading = title or f"@{symbol} of @{first.name} across passes"
    panels = []
    for index, stage in enumerate(stages):
        parts = [f'<section class="stage" id="stage-{index}">']
        badge = ""
        if index:
            badge = ('<span class="badge changed">changed</span>' if stage.changed
                     else '<span class="badge same">unchanged</span>')
        label = "before the first pass" if index == 0 else f"after pass {index}"
        parts.append(f'<h2><span class="step">{index}</span> {esc(stage.name)} {badge}</h2>')
        timing = f" &middot; {stage.seconds * 1000:.1f} ms" if index else ""
        parts.append(f'<p class="meta">{esc(label)}{timing}</p>')
        if index:
            if stage.statistics:
                rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
                               for k, v in sorted(stage.statistics.items()))
                parts.append(f'<table class="stats">{rows}</table>')
            else:
                parts.append('<p class="nostats">no statistics</p>')
        drawn, shown = stage.module, symbol
        if symbol not in stage.module:
            from fedc.passes.analysis import as_analysable

            drawn, shown = as_analysable(stage.module)
            having = ", ".join("@" + s for s in stage.module.symbols) or "nothing"
            if shown is None:
                parts.append(f'<p class="missing">@{esc(symbol)} is not in the module at this stage '
                             f'(it has {esc(having)})</p>')
            else:
                parts.append(f'<p class="missing">@{esc(symbol)} is now a MapReduce form ({esc(having)}); '
                             f'drawn as the round it runs</p>')
        if shown is not None:
            svg = to_svg(drawn, shown, costs=costs)
            uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
            alt = f"dataflow of @{shown} {label}" + (f" ({stage.name})" if index else "")
            parts.append(f'<div class="picture"><img src="{uri}" alt="{esc(alt)}"></div>')
        ir_text = print_module(stage.module, elide_resources=True)
        parts.append(f"<details><summary>textual IR</summary><pre>{esc(ir_text)}</pre></details>")
        parts.append("</section>")
        panels.append("\n".join(parts))
    pipeline_text = pipeline if pipeline is not None else ",".join(s.name for s in stages[1:])
    return _STAGES_PAGE.format(
        title=esc(heading),
        pipeline=esc(pipeline_text or "(no passes)"),
        count=len(stages) - 1,
        plural="" if len(stages) == 2 else "es",
        panels="\n".join(panels),
    )


def render_stages(module: Module, pipeline, path: Union[str, os.PathLike], symbol: Optional[str] = None, *,
                  costs: bool = False, **run_options) -> pathlib.Path:
    """Runs ``pipeline`` on ``module`` and writes the page of :func:`stages_html` to ``path``."""
    from fedc.computation import Computation

    if isinstance(module, Computation):
        module, symbol = module.to_ir(), symbol or module.name
    path = pathlib.Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise FedcError(f"{path}: the pictures across passes are an HTML page; give a .html file")
    if symbol is None and len(module):
        symbol = module.symbols[-1]
    if symbol is not None:
        module.lookup(symbol)
    text = stages_html(pass_stages(module, pipeline, **run_options), symbol, costs=costs,
                       pipeline=pipeline if isinstance(pipeline, str) else None)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise FedcError(f"cannot write {path}: {e.strerror or e}") from None
    return path


_STAGES_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  body {{ font-family: Helvetica, Arial, sans-serif; margin: 0; background: #fafafa; color: #222; }}
  header {{ padding: 12px 20px; border-bottom: 1px solid #ddd; background: #fff; }}
  header h1 {{ font-size: 18px; margin: 0 0 4px 0; }}
  header p {{ margin: 0; color: #555; font-size: 13px; }}
  code {{ background: #f0f0f0; padding: 1px 4px; border-radius: 3px; }}
  .stages {{ display: flex; flex-direction: row; align-items: flex-start; gap: 14px;
             overflow-x: auto; padding: 14px 20px; }}
  .stage {{ flex: 0 0 auto; background: #fff; border: 1px solid #ccc; border-radius: 6px;
            padding: 10px 12px; max-width: 95vw; }}
  .stage h2 {{ font-size: 15px; margin: 0 0 4px 0; }}
  .step {{ display: inline-block; min-width: 1.4em; text-align: center; background: #1f63b0; color: #fff;
           border-radius: 9px; font-size: 12px; padding: 1px 4px; margin-right: 4px; }}
  .badge {{ font-size: 11px; font-weight: normal; border-radius: 3px; padding: 1px 5px; margin-left: 6px; }}
  .changed {{ background: #fff4e0; color: #c46f00; border: 1px solid #c46f00; }}
  .same {{ background: #f0f0f0; color: #777; border: 1px solid #bbb; }}
  .meta, .nostats, .missing {{ font-size: 12px; color: #666; margin: 2px 0 6px 0; }}
  .stats {{ font-size: 12px; border-collapse: collapse; margin-bottom: 6px; }}
  .stats th {{ text-align: left; font-weight: normal; color: #444; padding: 1px 10px 1px 0; }}
  .stats td {{ text-align: right; font-variant-numeric: tabular-nums; }}
  .picture img {{ display: block; max-height: 78vh; width: auto; }}
  details {{ margin-top: 6px; font-size: 12px; }}
  pre {{ font-size: 11px; max-width: 90vw; max-height: 50vh; overflow: auto; background: #f6f6f6;
         padding: 6px; }}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p>pipeline <code>{pipeline}</code>: the input and the IR after each of {count} pass{plural}, left to right</p>
</header>
<main class="stages">
{panels}
</main>
</body>
</html>
"""
