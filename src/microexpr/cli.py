"""The ``microexpr`` command. Each command is a thin shell over a library function."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Facial micro-expression recognition toolkit.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
datasets_app = typer.Typer(help="Database readers.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")
console = Console()


@models_app.command("list")
def models_list() -> None:
    """List registered models with the input each one takes."""
    from microexpr import models

    table = Table("name", "family", "input", "size", "channels", "scaling", "frames")
    for name in models.list_models():
        spec = models.info(name).input
        table.add_row(
            name,
            models.info(name).family,
            spec.kind,
            str(spec.size),
            str(spec.in_chans),
            spec.scaling,
            str(spec.num_frames or ""),
        )
    console.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """List registered database readers: coded clips and images, then long videos."""
    from microexpr.datasets.registry import READERS, VIDEO_READERS

    table = Table("name", "gives", "description")
    for name, entry in READERS.items():
        table.add_row(name, "samples", entry.description)
    for name, entry in VIDEO_READERS.items():
        table.add_row(name, "long videos", entry.description)
    console.print(table)


def _option_value(text: str) -> object:
    """``true``/``false``/``none`` and integers as such; anything else stays text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _reader_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs -> reader keyword arguments; dotted keys nest
    (``columns.emotion=Emotion`` -> ``columns={"emotion": "Emotion"}``)."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE")
        *parents, leaf = key.split(".")
        target = options
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = _option_value(value)
    return options


@datasets_app.command("check")
def datasets_check(
    name: Annotated[str, typer.Argument(help="reader name (see `microexpr datasets list`)")],
    path: Annotated[str, typer.Argument(help="the database folder, as distributed")],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="reader option KEY=VALUE, e.g. sheet=my.xlsx, columns.emotion=Emotion, "
            "modality=VIS (repeatable)",
        ),
    ] = None,
    images: Annotated[
        Literal["all", "keyframes", "none"],
        typer.Option(help="decode frames: all, keyframes or none"),
    ] = "all",
    show: Annotated[int, typer.Option(help="repairs and notes to list (all errors are)")] = 50,
) -> None:
    """Read a database and list counts per class, subject and database, every problem
    (file, row, reason), and what each reader on_error choice would do with it. Exits with
    1 when a row or file could not be read."""
    from microexpr import datasets

    if name in datasets.VIDEO_READERS:
        _check_long_videos(name, path, _reader_options(option or []), images, show)
        return
    from microexpr.datasets.problems import DEFAULT_ON_ERROR, check
    from microexpr.labels import FOR_DATASET
    from microexpr.recipe import check_options

    if name not in datasets.READERS:
        console.print(str(datasets.READERS.unknown(name)))
        raise typer.Exit(2)
    options = _reader_options(option or [])
    reader = datasets.READERS.get(name).read
    check_options(reader, options, "--option", positional=1, fixed=("report", "verify_images"))
    result = check(name, path, verify_images=images, **options)
    samples, report = result.samples, result.report
    console.print(
        f"[bold]{name}[/bold]: {len(samples)} samples, {len(result.counts('subject'))} subjects"
    )
    for title, counts in (
        ("database", result.counts("dataset")),
        ("label", result.counts("label")),
    ):
        table = Table(title, "samples")
        for key, count in counts.items():
            table.add_row(key, str(count))
        console.print(table)
    for taxonomy in FOR_DATASET.get(name, ()):
        counts = result.taxonomy_counts(taxonomy)
        listing = ", ".join(f"{c} {n}" for c, n in counts.items())
        console.print(f"{taxonomy}: {sum(counts.values())} samples ({listing})", markup=False)
    subjects = result.counts("subject")
    console.print("subjects: " + ", ".join(f"{s} {n}" for s, n in subjects.items()), markup=False)
    for choice, outcome in result.outcomes().items():
        default = " (the default)" if choice == DEFAULT_ON_ERROR else ""
        console.print(f"on_error={choice}{default}: {outcome}", markup=False, highlight=False)
    _print_problems(report, show)


def _print_problems(report, show: int) -> None:
    """Every error, the first ``show`` repairs and notes, the totals; exit 1 on an error."""
    errors = report.errors
    others = [p for p in report.problems if p.kind != "error"]
    for problem in errors + others[:show]:
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    if len(others) > show:
        console.print(f"... {len(others) - show} more repairs and notes (--show N)")
    console.print(
        f"{len(errors)} errors, {len(report.of_kind('repair'))} repairs, "
        f"{len(report.of_kind('note'))} notes"
    )
    if errors:
        raise typer.Exit(1)


def _check_long_videos(name: str, path: str, options: dict, images: str, show: int) -> None:
    """``datasets check`` for a long-video reader: videos, subjects, events per type and
    emotion, every problem."""
    from microexpr import datasets
    from microexpr.datasets.long_video_sheet import check_videos
    from microexpr.datasets.registry import check_options

    check_options(name, datasets.VIDEO_READERS.get(name).read, options)
    result = check_videos(name, path, verify_images=images, **options)
    events = sum(len(v.events) for v in result.videos)
    console.print(
        f"[bold]{name}[/bold]: {len(result.videos)} videos, {len(result.counts['subject'])} "
        f"subjects, {events} events"
    )
    for title in ("type", "emotion"):
        table = Table(title, "events")
        for key, count in sorted(result.counts[title].items()):
            table.add_row(key, str(count))
        console.print(table)
    subjects = ", ".join(f"{s} {n}" for s, n in sorted(result.counts["subject"].items()))
    console.print(f"videos per subject: {subjects}", markup=False)
    _print_problems(result.report, show)


benchmark_app = typer.Typer(
    help="Standard benchmarks on your own copy of the data.", no_args_is_help=True
)
app.add_typer(benchmark_app, name="benchmark")

DEFAULT_COMPOSITE = "../shared/data/megc2019_composite"


def _print_metrics(metrics: dict, out: str) -> None:
    table = Table("subset", "n", "accuracy", "UF1", "UAR")
    rows = [("Full", metrics["overall"])] + sorted(metrics["per_dataset"].items())
    for name, m in rows:
        table.add_row(
            name, str(m["n"]), f"{m['accuracy']:.4f}", f"{m['uf1']:.4f}", f"{m['uar']:.4f}"
        )
    console.print(table)
    console.print(
        f"{metrics['seconds']:.1f} s; results in {out}/ (report.md, metrics.json, predictions.csv)"
    )


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config value KEY=VALUE (dotted keys, YAML values), e.g. "
        "--set train.epochs=10 --set model.options.dropout=0.3 (repeatable).",
    ),
]
MaxFoldsOption = Annotated[
    int | None, typer.Option(help="Only the protocol's first N folds (a smoke run).")
]
CacheOption = Annotated[
    str | None,
    typer.Option(help="Feature cache root (default: $MICROEXPR_CACHE or ~/.cache/microexpr)."),
]
WorkersOption = Annotated[
    int | None, typer.Option(help="Preprocessing processes (default: all cores).")
]
InnerPredictionsOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="Also train the recipe on N leave-subjects-out splits of every fold's training "
        "subjects and write OUT/inner_predictions.csv (for `ensemble --select inner`).",
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress bars (they are shown on a terminal only anyway)."
    ),
]


def _with_data(data: str | None, overrides: list[str] | None) -> list[str]:
    """The ``--set`` overrides, with ``--data`` as ``data.root`` first."""
    return [*([f"data.root={data}"] if data is not None else []), *(overrides or [])]


def _progress(quiet: bool) -> bool:
    """Progress bars only on a terminal: never in a pipe or a log file, never with --quiet
    or a true ``TQDM_DISABLE`` (tqdm's own switch)."""
    disabled = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return not quiet and not disabled and sys.stderr.isatty()


# What `benchmark composite` runs: the published STSTNet recipe (configs/composite_ststnet.yaml
# holds the same; a test keeps the two equal).
COMPOSITE_STSTNET = {
    "name": "MEGC2019 composite LOSO, ststnet, 800 epochs",
    "data": {"name": "flow_images", "taxonomy": "composite3"},
    "model": {"name": "ststnet"},
    "train": {
        "epochs": 800,
        "batch_size": 256,
        "lr": 5e-5,
        "optimizer": "adam",
        "loss": "cross_entropy",
        "shuffle": False,
        "group_by_label": True,
    },
    "protocol": {"name": "composite_loso"},
    "ensemble": 1,
}


BackendOption = Annotated[
    str,
    typer.Option(
        help="Where folds run: local, or ray (folds, members and stacked parts as Ray tasks; "
        "a local Ray starts by itself; needs pip install 'microexpr[ray]')."
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster address (ray://host:10001 or host:6379); default: local Ray."),
]


def _backend(name: str) -> str:
    if name not in ("local", "ray"):
        raise typer.BadParameter(f"{name!r}: local or ray", param_hint="--backend")
    return name


@benchmark_app.command("composite")
def benchmark_composite(
    data: Annotated[
        str, typer.Option(help="MEGC2019 composite flow-image folder (CSV + images).")
    ] = DEFAULT_COMPOSITE,
    out: Annotated[
        str, typer.Option(help="Output folder; re-running into it resumes.")
    ] = "runs/composite",
    overrides: SetOption = None,
    max_folds: MaxFoldsOption = None,
    save_model: Annotated[
        bool, typer.Option(help="Fit a final model on all subjects and save it (OUT/model).")
    ] = True,
    inner_predictions: InnerPredictionsOption = 0,
    quiet: QuietOption = False,
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """MEGC2019 composite LOSO (68 subjects, 3 classes) with the published STSTNet recipe:
    raw BGR flow images, Adam 5e-5, batch 256, 800 epochs, cross-entropy, training samples
    grouped by class, seed 0, one model per fold. Change any of it with --set, e.g.
    --set train.seed=1 --set ensemble=5 --set train.shuffle=true --set engine=per_fold."""
    from pathlib import Path

    from microexpr.config import config_from
    from microexpr.train.experiment import run_experiment

    cfg = config_from(COMPOSITE_STSTNET, [f"data.root={data}", *(overrides or [])])
    if not overrides or not any(o.startswith("name=") for o in overrides):
        cfg.name = f"MEGC2019 composite LOSO, {cfg.model.name}, {cfg.train.epochs} epochs"
    metrics = run_experiment(
        cfg,
        Path(out),
        _progress(quiet),
        max_folds=max_folds,
        save_model=save_model,
        backend=_backend(backend),
        address=address,
        inner_predictions=inner_predictions,
    )
    _print_metrics(metrics, out)


@app.command("train")
def train_command(
    config: Annotated[str, typer.Argument(help="Experiment YAML (see configs/).")],
    out: Annotated[str, typer.Option(help="Output folder; re-running into it resumes.")],
    data: Annotated[str | None, typer.Option(help="Dataset root (sets data.root).")] = None,
    overrides: SetOption = None,
    max_folds: MaxFoldsOption = None,
    cache: CacheOption = None,
    workers: WorkersOption = None,
    save_model: Annotated[
        bool,
        typer.Option(help="Fit a final model on all subjects with the same recipe (OUT/model)."),
    ] = True,
    save_fold_models: Annotated[
        bool, typer.Option(help="Also save each fold's model (OUT/fold_models/<fold>).")
    ] = False,
    inner_predictions: InnerPredictionsOption = 0,
    quiet: QuietOption = False,
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Run an experiment config: its preprocessing (cached), every fold of its protocol, the
    pooled report, and a model bundle fitted on all subjects (load it with `predict`)."""
    from pathlib import Path

    from microexpr.config import load_config
    from microexpr.train.experiment import run_experiment

    cfg = load_config(config, _with_data(data, overrides))
    metrics = run_experiment(
        cfg,
        Path(out),
        _progress(quiet),
        max_folds=max_folds,
        cache=cache,
        save_model=save_model,
        save_fold_models=save_fold_models,
        workers=workers,
        backend=_backend(backend),
        address=address,
        inner_predictions=inner_predictions,
    )
    _print_metrics(metrics, out)
    if save_model:
        console.print(f"model bundle: {out}/model (microexpr predict {out}/model --data DIR)")


@app.command("pretrain")
def pretrain_command(
    config: Annotated[str, typer.Argument(help="Experiment YAML whose model is pretrained.")],
    out: Annotated[str, typer.Option(help="Output folder: a bundle with weights.safetensors.")],
    data: Annotated[
        str | None,
        typer.Option(help="A database you hold, e.g. FER2013 (with --set data.name=...)."),
    ] = None,
    synthetic: Annotated[
        int, typer.Option(help="Instead: this many synthetic subjects (written in OUT/source).")
    ] = 0,
    clips: Annotated[int, typer.Option(help="Synthetic clips per subject.")] = 14,
    seed: Annotated[int, typer.Option(help="Synthetic data seed.")] = 0,
    overrides: SetOption = None,
    cache: CacheOption = None,
    workers: WorkersOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a config's model on another source first: a macro-expression database you hold
    (--data DIR --set data.name=fer2013 --set data.taxonomy=fer-7) or synthetic clips with
    planted facial actions (--synthetic N). Fine-tune from it with
    `train CONFIG --set model.weights=OUT/weights.safetensors`."""
    from pathlib import Path

    from microexpr.config import load_config
    from microexpr.synth.sources import synthetic_source
    from microexpr.train.pretrain import pretrain

    if (data is None) == (synthetic == 0):
        raise typer.BadParameter("give a source: --data DIR or --synthetic SUBJECTS")
    # data.* settings describe the source; the config's own data is what the model is for
    cfg = load_config(config, [o for o in overrides or [] if not o.startswith("data.")])
    if synthetic:
        source = synthetic_source(cfg, Path(out) / "source", synthetic, clips, seed)
    else:
        source = load_config(config, _with_data(data, overrides)).data
    bundle = pretrain(cfg, Path(out), source, _progress(quiet), cache, workers)
    console.print(
        f"pretrained on {bundle.manifest['trained_on']['samples']} samples of {source.name} "
        f"({', '.join(bundle.classes)}); fine-tune with "
        f"--set model.weights={out}/weights.safetensors"
    )


@app.command("sweep")
def sweep_command(
    config: Annotated[str, typer.Argument(help="Experiment YAML (see configs/).")],
    out: Annotated[str, typer.Option(help="Output folder; re-running into it resumes.")],
    grid: Annotated[
        list[str],
        typer.Option(
            help="KEY=V1,V2,... values to try (repeatable; every combination is a candidate), "
            "e.g. --grid train.lr=1e-4,5e-5 --grid train.epochs=200,800."
        ),
    ],
    data: Annotated[str | None, typer.Option(help="Dataset root (sets data.root).")] = None,
    overrides: SetOption = None,
    inner_folds: Annotated[
        int, typer.Option(help="Leave-subjects-out splits of each outer fold's training subjects.")
    ] = 3,
    max_folds: MaxFoldsOption = None,
    cache: CacheOption = None,
    backend: Annotated[
        str,
        typer.Option(help="ray (a Ray Tune trial per candidate) or local (in turn, no Ray)."),
    ] = "ray",
    address: AddressOption = None,
    quiet: QuietOption = False,
) -> None:
    """Choose among config overrides by nested selection (Ray Tune, or locally): each
    candidate is scored (UF1) on inner leave-subjects-out splits of every outer fold's
    training subjects, never on a test subject; each outer fold's chosen setting is then
    trained on all its training subjects and scored once on its test subject. Writes the
    pooled report and sweep.json (every candidate's inner scores and each fold's choice).
    The same selection runs inside `train` when the config sets protocol.inner."""
    from pathlib import Path

    from microexpr.config import load_config
    from microexpr.train.sweep import parse_grid, run_sweep

    cfg = load_config(config, _with_data(data, overrides))
    metrics = run_sweep(
        cfg,
        parse_grid(grid),
        Path(out),
        inner_folds=inner_folds,
        max_folds=max_folds,
        cache=cache,
        address=address,
        progress=_progress(quiet),
        backend=_backend(backend),
    )
    _print_metrics(metrics, out)


@app.command("ensemble")
def ensemble_command(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN_DIR", help="Finished run folders (predictions.csv)."),
    ],
    out: Annotated[str, typer.Option(help="Output folder for the ensemble's result files.")],
    weights: Annotated[
        str | None,
        typer.Option(help="One positive weight per run, e.g. 1,1,2 (normalised; default equal)."),
    ] = None,
    select: Annotated[
        str,
        typer.Option(
            help="fixed: the weights above; inner: per fold, the subset of runs best on inner "
            "splits of its training subjects (runs trained with --inner-predictions)."
        ),
    ] = "fixed",
    class_bias: Annotated[
        bool,
        typer.Option(
            help="With --select inner: per fold, also the class thresholds (offsets of the "
            "log-probabilities) best on the same inner splits; one run is then enough."
        ),
    ] = False,
) -> None:
    """Average finished runs' class probabilities (any architectures, same protocol and
    samples) with weights fixed in advance, or with members chosen per fold by nested
    selection (and, with --class-bias, the class thresholds chosen there too), and score the
    average once. Writes the report files `train` writes, plus
    members.json (each member folder and its checksums) and, selecting, selection.json."""
    from pathlib import Path

    from microexpr.evaluate.ensemble import normalised_weights, write_ensemble

    if select not in ("fixed", "inner"):
        raise typer.BadParameter(f"{select!r}: fixed or inner", param_hint="--select")
    if select == "inner" and weights is not None:
        raise typer.BadParameter(
            "the selection chooses members; give no weights", param_hint="--weights"
        )
    if class_bias and select != "inner":
        raise typer.BadParameter(
            "thresholds are chosen on inner splits: add --select inner", param_hint="--class-bias"
        )

    given = None
    if weights is not None:
        try:
            given = [float(w) for w in weights.split(",")]
            normalised_weights(given, len(runs))
        except ValueError as err:
            raise typer.BadParameter(f"{weights!r}: {err}", param_hint="--weights") from None
    metrics = write_ensemble([Path(r) for r in runs], Path(out), given, select, class_bias)
    _print_metrics(metrics, out)
    console.print(f"members: {out}/members.json")
    if select == "inner":
        console.print(f"choices: {out}/selection.json")


@app.command("predict")
def predict_command(
    bundle: Annotated[str, typer.Argument(help="Model bundle folder (a run's OUT/model).")],
    data: Annotated[str, typer.Option(help="Database folder to score.")],
    out: Annotated[str, typer.Option(help="Output folder for predictions.csv.")],
    reader: Annotated[
        str | None, typer.Option(help="Reader (default: the one the model was trained with).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="reader option KEY=VALUE (repeatable)"),
    ] = None,
    cache: CacheOption = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    quiet: QuietOption = False,
) -> None:
    """Score every sample of a database folder with a saved model: its own preprocessing,
    then class probabilities. Writes OUT/predictions.csv (id, subject, true label where the
    model knows the class, predicted label, score, one probability column per class)."""
    from pathlib import Path

    from microexpr import datasets, load_bundle
    from microexpr.train.experiment import default_cache

    model = load_bundle(bundle)
    name = reader or model.plan.data.name
    options = _reader_options(option) if option else (model.plan.data.options if not reader else {})
    samples = datasets.load(name, data, **options)
    table = model.predict(
        samples, device=device, cache=cache or default_cache(), progress=_progress(quiet)
    )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "predictions.csv", index=False)
    for sample_id, reason in list(table.attrs["failed"].items())[:20]:
        console.print(f"skipped {sample_id}: {reason}", markup=False, highlight=False)
    scored = table.dropna(subset=["true_label"]) if "true_label" in table else table.iloc[:0]
    summary = f"{len(table)} samples scored -> {out_dir / 'predictions.csv'}"
    if len(scored):
        accuracy = float((scored["true_label"] == scored["label"]).mean())
        summary += f"; accuracy {accuracy:.4f} on the {len(scored)} with a known class"
    console.print(summary, markup=False, highlight=False)


@app.command("export")
def export_command(
    bundle: Annotated[str, typer.Argument(help="Model bundle folder (a run's OUT/model).")],
    out: Annotated[str, typer.Option(help="Folder for the exported bundle.")],
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
) -> None:
    """Export a model bundle for another runtime: OUT/model.onnx (the network, ensemble
    members averaged, probabilities out) and OUT/bundle.json (the same Plan and classes).
    `predict` and `microexpr.load_bundle` run the export with ONNX Runtime; the
    preprocessing stays in Python (docs/export.md). Needs the `onnx` extra."""
    from microexpr.export import FORMATS, export_onnx

    if format not in FORMATS:
        raise typer.BadParameter(f"{format!r}: known formats: {', '.join(FORMATS)}")
    exported = export_onnx(bundle, out)
    parity = exported.manifest["onnx"]["parity"]
    summary = (
        f"{bundle} -> {exported.path} (model.onnx + bundle.json); ONNX Runtime vs PyTorch: "
        f"max |difference| {parity['max_abs_diff']:.2e} on {parity['samples']} random inputs"
    )
    if "torch_float32_error" in parity:
        summary += (
            f" (from float64: PyTorch {parity['torch_float32_error']:.2e}, "
            f"ONNX Runtime {parity['onnx_float32_error']:.2e})"
        )
    console.print(summary, markup=False, highlight=False, soft_wrap=True)


@app.command("evaluate-spotting")
def evaluate_spotting(
    pred: Annotated[
        str,
        typer.Argument(
            help="Predicted intervals CSV: subject, video, onset, offset, and optionally type, "
            "emotion (or label), score."
        ),
    ],
    truth: Annotated[
        str,
        typer.Argument(
            help="Ground-truth intervals CSV: subject, video, onset, offset, and optionally "
            "type, emotion (or label)."
        ),
    ],
    iou: Annotated[float, typer.Option(help="Least frame IoU of a hit (MEGC: 0.5).")] = 0.5,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated emotions the analysis averages over, e.g. "
            "negative,positive,surprise (default: those seen among the hits)."
        ),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the scores to this JSON file.")
    ] = None,
) -> None:
    """Score spotted intervals as MEGC does: TP, FP, FN, precision, recall and F1 per type and
    overall at frame IoU >= 0.5 and, when both files name emotions, the spot-then-recognise
    analysis of the hits and STRS (docs/spotting.md)."""
    import json
    from pathlib import Path

    import pandas as pd

    from microexpr.evaluate.spotting import format_scores, spotting_scores

    keys = {"subject": str, "video": str}  # keep ids such as 006 as written
    scores = spotting_scores(
        pd.read_csv(pred, dtype=keys),
        pd.read_csv(truth, dtype=keys),
        iou,
        classes=classes.split(",") if classes else None,
    )
    console.print(format_scores(scores), markup=False, highlight=False, soft_wrap=True)
    if json_out:
        Path(json_out).write_text(json.dumps(scores.to_dict(), indent=2) + "\n")


@app.command("analyze")
def analyze_command(
    videos: Annotated[
        list[str],
        typer.Argument(
            help="Video files (mp4, avi, mov, ...), folders of frame images, or folders of either."
        ),
    ],
    out: Annotated[str, typer.Option(help="Output folder: one subfolder per video.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model bundle (a run's OUT/model) that labels each interval."),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(help="Frame rate (required for frame folders; overrides a file's)."),
    ] = None,
    video_out: Annotated[
        bool, typer.Option("--video-out", help="Also write an annotated annotated.mp4.")
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Analysis setting analyze.KEY=VALUE, e.g. --set analyze.threshold=5 "
            "(docs/analyze.md lists them; repeatable).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="Where the model runs: cpu, cuda, cuda:N.")] = "cpu",
    quiet: QuietOption = False,
) -> None:
    """Spot micro- and macro-expressions in long videos and, with --model, label each one.

    Per video OUT/<name>/: events.csv, frames.csv, timeline.png, event_<n>.png (apex face and
    its flow), annotated.mp4 with --video-out, analysis.json (written last). A video finished
    before is not analysed again; one that cannot be read is reported and the others go on.
    Exits with 1 when any video failed.
    """
    from pathlib import Path

    from microexpr.analyze import Analyzer, settings_from
    from microexpr.analyze.report import analyze_videos
    from microexpr.analyze.video import video_inputs

    analyzer = Analyzer(model=model, device=device, settings=settings_from(overrides))
    inputs = video_inputs(videos)
    result = analyze_videos(inputs, Path(out), analyzer, fps, video_out, _progress(quiet))
    for path in result.done:
        events = result.analyses[path].events
        micro = int((events["type"] == "micro").sum())
        console.print(
            f"{path}: {micro} micro, {len(events) - micro} macro",
            markup=False,
            highlight=False,
        )
        for note in result.analyses[path].notes:
            console.print(f"  note: {note}", markup=False, highlight=False)
    for path in result.skipped:
        console.print(f"{path}: done before, kept", markup=False, highlight=False)
    for reason in result.failed.values():
        console.print(f"[red]error:[/red] {reason}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(result.done)} analysed, {len(result.skipped)} kept, {len(result.failed)} failed "
        f"-> {out}",
        markup=False,
        highlight=False,
    )
    if result.failed:
        raise typer.Exit(1)


@app.command("spot")
def spot_command(
    config: Annotated[
        str, typer.Argument(help="Spotter recipe, e.g. configs/spotter_softnet.yaml.")
    ],
    data: Annotated[str, typer.Option(help="Long-video database folder.")],
    out: Annotated[str, typer.Option(help="Output folder (folds, report, spotter.json).")],
    layout: Annotated[
        str, typer.Option(help="casme_sq, samm_lv, casme3_lv or synthetic (MP4s + truth.csv).")
    ] = "casme_sq",
    model: Annotated[
        str | None, typer.Option(help="Model bundle: also label the hits (STRS).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Recipe override KEY=VALUE (repeatable).")
    ] = None,
    device: Annotated[str, typer.Option(help="Where the model runs: cpu, cuda, cuda:N.")] = "cpu",
    quiet: QuietOption = False,
) -> None:
    """Learned spotter under leave-one-subject-out on long videos: per-fold predictions,
    pooled MEGC figures, and the final spotter fitted on all subjects (docs/analyze.md)."""
    from microexpr.analyze.learned_cli import spot_command as run

    def echo(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    run(config, data, out, layout, model, overrides, device, _progress(quiet), echo)


@app.command("demo")
def demo(
    out: Annotated[str, typer.Option(help="Output folder.")] = "runs/demo",
    subjects: Annotated[int, typer.Option(help="Synthetic subjects (LOSO folds).")] = 8,
    clips: Annotated[int, typer.Option(help="Clips per subject.")] = 12,
    epochs: Annotated[int, typer.Option(help="Epochs per fold.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed for data and training.")] = 0,
    quiet: QuietOption = False,
) -> None:
    """The whole pipeline on synthetic flow images the project makes itself (no files needed).

    Synthetic clips with planted facial actions -> TV-L1 flow images in the published flat
    layout -> reader -> STSTNet LOSO -> predictions.csv, metrics.json, report.md; then a
    synthetic long video with planted expressions, blinks, head drift and flicker, analysed
    with the model just trained (OUT/analysis/<video>/timeline.png, events.csv).
    """
    from pathlib import Path

    from microexpr.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from microexpr.synth import synthetic_flow_images
    from microexpr.synth.replicas.flow_images import write_flat
    from microexpr.train.experiment import run_experiment

    out_dir = Path(out)
    data_dir = out_dir / "data"
    with console.status("making synthetic flow images"):
        write_flat(synthetic_flow_images(subjects, clips, seed=seed), data_dir, dataset="synthetic")
    cfg = ExperimentConfig(
        name=f"demo: synthetic LOSO, ststnet, {epochs} epochs",
        data=DataConfig(name="flow_images", root=str(data_dir), taxonomy="composite3"),
        model=ModelConfig(name="ststnet"),
        train=TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=seed),
    )
    _print_metrics(run_experiment(cfg, out_dir / "result", _progress(quiet)), f"{out}/result")
    _demo_long_video(out_dir, seed)


def _demo_long_video(out_dir, seed: int) -> None:
    """The demo's last step: a 10 s synthetic long video (its classes' emotions), spotted and
    labelled by the model the demo just trained, scored against what was planted."""
    from microexpr.analyze import Analyzer
    from microexpr.analyze.report import save_analysis
    from microexpr.evaluate.spotting import spotting_scores
    from microexpr.synth.long_videos import (
        generate_long_videos,
        long_video_truth,
        write_long_video,
    )

    analyzer = Analyzer(model=out_dir / "result" / "model")
    with console.status("making a synthetic long video"):
        video = generate_long_videos(1, 1, seed=seed, emotions=analyzer.classes)[0]
        path = write_long_video(video, out_dir / "long_video" / f"{video.name}.mp4")
    with console.status(f"analysing {path}"):
        analysis = analyzer.analyze(path)
        folder = save_analysis(analysis, out_dir / "analysis" / analysis.video, analyzer)
    spotted = analysis.events.assign(subject=video.subject_id)
    scores = spotting_scores(spotted, long_video_truth([video]))
    hits = scores.matches.dropna(subset=["iou"])
    right = int((hits["emotion"] == hits["truth_emotion"]).sum())
    console.print(
        f"long video {path}: {len(analysis.events)} intervals spotted, {len(video.events)} "
        f"planted, {len(hits)} found (spotting F1 {scores.table.loc['overall', 'f1']:.2f}), "
        f"{right} of them labelled right -> {folder / 'timeline.png'}",
        markup=False,
        highlight=False,
    )


@app.command("synth")
def synth(
    layout: Annotated[str, typer.Option(help="Database layout (listed below).")],
    out: Annotated[str, typer.Option(help="Output folder.")],
    subjects: Annotated[int, typer.Option(help="Number of synthetic subjects.")] = 3,
    clips: Annotated[int, typer.Option(help="Clips per subject.")] = 4,
    size: Annotated[
        int, typer.Option(help="Frame side in pixels (flow layouts: image side).")
    ] = 64,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same files.")] = 0,
    fps: Annotated[float | None, typer.Option(help="Frame rate (default: the database's).")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per clip (default: from fps).")] = None,
    emotions: Annotated[str | None, typer.Option(help="Comma-separated emotions.")] = None,
    faces: Annotated[
        str | None, typer.Option(help="Face photo or folder (default: astronaut).")
    ] = None,
    drift: Annotated[float, typer.Option(help="Head drift over a clip, px.")] = 0.0,
    blink: Annotated[float, typer.Option(help="Chance of a blink per clip.")] = 0.0,
    noise: Annotated[float, typer.Option(help="Sensor noise, grey levels.")] = 1.0,
    flicker: Annotated[float, typer.Option(help="Illumination flicker, fraction.")] = 0.0,
    quirk: Annotated[
        list[str] | None, typer.Option(help="Writer quirk KEY=VALUE (repeatable).")
    ] = None,
    truth: Annotated[
        str | None, typer.Option(help="Also write the ground truth to this CSV.")
    ] = None,
    videos: Annotated[int, typer.Option(help="Long-video layouts: videos per subject.")] = 1,
    seconds: Annotated[float, typer.Option(help="Long-video layouts: seconds per video.")] = 10.0,
    micro: Annotated[int, typer.Option(help="Long-video layouts: micro-expressions.")] = 3,
    macro: Annotated[int, typer.Option(help="Long-video layouts: macro-expressions.")] = 1,
    distractors: Annotated[
        str, typer.Option(help="Long-video layouts: comma-separated, or '' for none.")
    ] = "drift,blink,flicker,noise",
) -> None:
    """Synthetic micro-expression clips on real faces, written in a database's own layout.

    Layouts: casme2, samm, smic, casme, casme3, mmew, composite, fer2013, ckplus, flow,
    flow-per-subject; long videos (--videos, --seconds, --micro, --macro; the truth CSV in
    MEGC's columns): casme_sq, samm_lv, casme3_lv.
    """
    import time

    import pandas as pd

    from microexpr.synth import write_synthetic
    from microexpr.synth.layouts import LONG_LAYOUTS

    start = time.perf_counter()
    if layout in LONG_LAYOUTS:
        _synth_long_videos(
            layout,
            out,
            subjects,
            videos,
            seconds,
            size,
            seed,
            fps,
            micro,
            macro,
            emotions,
            faces,
            distractors,
            _reader_options(quirk or []),
            truth,
        )
        return
    records = write_synthetic(
        layout,
        out,
        subjects,
        clips,
        size=size,
        seed=seed,
        fps=fps,
        emotions=emotions.split(",") if emotions else None,
        faces=faces,
        n_frames=frames,
        quirks=_reader_options(quirk or []),
        drift=drift,
        blink_prob=blink,
        noise=noise,
        flicker=flicker,
    )
    if truth:
        pd.DataFrame(records).to_csv(truth, index=False)
    counts = pd.Series([r["label"] for r in records]).value_counts().to_dict()
    console.print(
        f"{layout}: {len(records)} samples in {out} ({time.perf_counter() - start:.1f} s); "
        f"labels {counts}"
    )


def _synth_long_videos(
    layout: str,
    out: str,
    subjects: int,
    videos: int,
    seconds: float,
    size: int,
    seed: int,
    fps: float | None,
    micro: int,
    macro: int,
    emotions: str | None,
    faces: str | None,
    distractors: str,
    quirks: dict,
    truth: str | None,
) -> None:
    """``synth`` for a long-video layout: write it and its truth in MEGC's columns."""
    import time

    from microexpr.samples import truth_table
    from microexpr.synth.layouts import write_long_synthetic

    start = time.perf_counter()
    written = write_long_synthetic(
        layout,
        out,
        subjects,
        videos,
        seconds,
        size,
        seed,
        fps,
        micro,
        macro,
        emotions.split(",") if emotions else None,
        faces,
        tuple(d for d in distractors.split(",") if d),
        quirks,
    )
    table = truth_table(written)
    if truth:
        table.to_csv(truth, index=False)
    counts = table["type"].value_counts().to_dict()
    console.print(
        f"{layout}: {len(written)} videos, {len(table)} events {counts} in {out} "
        f"({time.perf_counter() - start:.1f} s)"
    )


@app.command("prepare")
def prepare_command(
    dataset: Annotated[
        str | None, typer.Argument(help="reader name (default: the --config's reader)")
    ] = None,
    path: Annotated[
        str | None, typer.Argument(help="the database folder (default: the --config's root)")
    ] = None,
    out: CacheOption = None,
    config: Annotated[
        str | None,
        typer.Option(help="Experiment YAML: run the preprocessing its Plan gives its model."),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="With --config: the database folder (sets data.root).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Preprocessing setting KEY=VALUE, e.g. --set pipeline=apex_face --set "
            "region=mouth --set size=96 (with --config: experiment keys, "
            "e.g. --set preprocess.gray=true). Repeatable.",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Try earlier failures again.")] = False,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="reader option KEY=VALUE (repeatable)"),
    ] = None,
    show: Annotated[int, typer.Option(help="Failures to list.")] = 20,
    quiet: QuietOption = False,
) -> None:
    """Run a preprocessing pipeline over a database, in parallel, cached per sample.

    Without --config the settings are preprocess settings (docs/preprocess.md), default
    pipeline flow_image; with --config they are the Plan's, so `train` then finds every
    sample ready. A second run with the same settings reuses every finished sample; an
    interrupted run resumes. Samples that fail (no face, unreadable frame) are listed and
    skipped.
    """
    from microexpr import datasets
    from microexpr.config import PreprocessConfig, config_from, load_config, validate
    from microexpr.preprocess.cache import prepare
    from microexpr.recipe import resolve
    from microexpr.train.experiment import default_cache

    if config is not None:
        extra = [f"data.name={dataset}"] if dataset else []
        extra += [f"data.root={data or path}"] if data or path else []
        plan = resolve(load_config(config, [*extra, *(overrides or [])]))
        if plan.preprocess is None:
            console.print(f"{config}: its model reads the reader's files as they are")
            return
        settings, dataset, path = plan.preprocess, plan.data.name, plan.data.root
        reader_options = {**plan.data.options, **_reader_options(option or [])}
    else:
        if dataset is None or path is None:
            raise typer.BadParameter("give DATASET and PATH, or --config")
        raw = config_from({}, [f"preprocess.{o}" for o in overrides or []]).preprocess
        pipeline = "flow_image" if raw.pipeline in ("auto", "none") else raw.pipeline
        settings = validate(PreprocessConfig, {**raw.model_dump(), "pipeline": pipeline}, "--set")
        reader_options = _reader_options(option or [])
    if path is None:
        raise typer.BadParameter("no database folder: give PATH or set data.root")
    samples = datasets.load(dataset, path, **reader_options)
    report = prepare(
        samples,
        settings,
        out or default_cache(),
        workers=workers,
        retry_failed=retry_failed,
        progress=_progress(quiet),
    )
    for sample_id, reason in list(report.failed.items())[:show]:
        console.print(f"failed {sample_id}: {reason}", markup=False, highlight=False)
    if len(report.failed) > show:
        console.print(f"... {len(report.failed) - show} more failures (--show N)")
    console.print(
        f"{settings.pipeline}: {report.total} samples -> {report.directory}: "
        f"{report.computed} computed, {report.reused} reused, {len(report.failed)} failed "
        f"({report.seconds:.1f} s)",
        markup=False,
        highlight=False,
    )


# `microexpr serve` (docs/serve.md). serve/command.py imports only typer, so registering it here
# keeps `microexpr --help` fast; FastAPI, uvicorn and the analysis load when the command runs.
from microexpr.serve.command import serve_command  # noqa: E402

app.command("serve")(serve_command)


def main() -> None:
    """Entry point: everyday faults (bad data or config, a read-only or full disk, a diverged
    fold) print one line, not a traceback. Every file is written atomically, so none of them
    leaves a file that blocks the corrected command."""
    try:
        app()
    except (OSError, KeyError, ValueError, FloatingPointError) as err:
        if isinstance(err, KeyError) and err.args:
            message = err.args[0]
        elif isinstance(err, OSError) and err.strerror and err.filename:
            message = f"{err.filename}: {err.strerror}"
        else:
            message = err
        console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
