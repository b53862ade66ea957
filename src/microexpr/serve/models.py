"""The model bundles the page offers: found once under ``--models``, each named by a
server-made id, so a request names a model by id and never by path."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from microexpr.bundle import FORMAT, MANIFEST

# How deep under --models a bundle.json is looked for (a run's OUT/model is two levels down).
MAX_DEPTH = 5


@dataclass(frozen=True)
class ModelChoice:
    """One bundle: ``id`` (what requests use), ``name`` (its folder relative to --models, for
    people), ``path`` (server side only), ``classes``, ``kind`` (input kind), ``runtime``."""

    id: str
    name: str
    path: Path
    classes: tuple[str, ...]
    kind: str
    runtime: str


def find_models(root: Path | None) -> dict[str, ModelChoice]:
    """Every folder under ``root`` (up to ``MAX_DEPTH`` levels) whose ``bundle.json`` is a
    microexpr bundle manifest, by id. Only the manifest is read here; the weights are loaded
    by the worker that first needs them."""
    if root is None:
        return {}
    root = Path(root).resolve()
    found: dict[str, ModelChoice] = {}
    for manifest_path in sorted(root.rglob(MANIFEST)):
        folder = manifest_path.parent
        relative = folder.relative_to(root)
        if len(relative.parts) > MAX_DEPTH:
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            continue
        name = relative.as_posix() if relative.parts else folder.name
        model_id = "m" + hashlib.sha256(name.encode()).hexdigest()[:10]
        found[model_id] = ModelChoice(
            model_id,
            name,
            folder,
            tuple(manifest.get("classes", ())),
            str(manifest.get("input", {}).get("kind", "")),
            str(manifest.get("runtime", "torch")),
        )
    return found
