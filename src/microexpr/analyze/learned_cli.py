"""``microexpr spot``: fit and score the learned spotter under LOSO on long videos.

Kept beside :mod:`microexpr.analyze.learned` so ``cli.py`` stays a thin shell: the command
there only parses its options and calls :func:`spot_command`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from microexpr.analyze.learned import load_spotter_config
from microexpr.analyze.spotting_loso import LAYOUTS, run_spotting
from microexpr.evaluate.spotting import format_scores


def spot_command(
    config: str,
    data: str,
    out: str,
    layout: str = "casme_sq",
    model: str | None = None,
    overrides: list[str] | None = None,
    device: str = "cpu",
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Read the recipe, run the LOSO (and, with ``model``, spot-then-recognise), print the
    pooled MEGC figures and where the final spotter went."""
    if layout not in LAYOUTS:
        raise ValueError(f"--layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    recipe = load_spotter_config(config, overrides)
    result, final = run_spotting(recipe, layout, data, out, model, device, progress, echo)
    subjects = len(result.folds)
    echo(f"\n{recipe.name}: LOSO over {subjects} subjects, pooled (IoU >= {recipe.iou:g})")
    echo(format_scores(result.scores))
    levels = ", ".join(f"{k} {h.threshold:g}/{h.extend:g}" for k, h in final.heads.items())
    folder = Path(out)
    echo(
        f"per-fold predictions in {folder / 'folds'}, pooled in {folder / 'predictions.csv'}, "
        f"report {folder / 'report.json'}"
    )
    echo(
        f"final spotter (all {len(final.subjects)} subjects; threshold/extend {levels}) -> "
        f"{folder / 'spotter.json'}; use it with: microexpr analyze VIDEO --out DIR "
        f"--set analyze.method=learned --set analyze.spotter={folder / 'spotter.json'}"
    )
