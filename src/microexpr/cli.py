"""The ``microexpr`` command. Each command is a thin shell over a library function."""

from __future__ import annotations

from typing import Annotated

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
    """List registered database readers."""
    from microexpr import datasets

    table = Table("name", "description")
    for name, description in datasets.names().items():
        table.add_row(name, description)
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
    images: Annotated[str, typer.Option(help="decode frames: all, keyframes or none")] = "all",
    show: Annotated[int, typer.Option(help="repairs and notes to list (all errors are)")] = 50,
) -> None:
    """Read a database and list counts per class, subject and database, and every problem
    (file, row, reason). Exits with 1 when a row or file could not be read."""
    from microexpr import datasets
    from microexpr.datasets.problems import check
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
    metrics = run_experiment(cfg, Path(out), max_folds=max_folds, save_model=save_model)
    _print_metrics(metrics, out)


@app.command("train")
def train_command(
    config: Annotated[str, typer.Argument(help="Experiment YAML (see configs/).")],
    out: Annotated[str, typer.Option(help="Output folder; re-running into it resumes.")],
    data: Annotated[str | None, typer.Option(help="Dataset root (sets data.root).")] = None,
    overrides: SetOption = None,
    max_folds: MaxFoldsOption = None,
    cache: CacheOption = None,
    workers: Annotated[
        int | None, typer.Option(help="Preprocessing processes (default: all cores).")
    ] = None,
    save_model: Annotated[
        bool,
        typer.Option(help="Fit a final model on all subjects with the same recipe (OUT/model)."),
    ] = True,
    save_fold_models: Annotated[
        bool, typer.Option(help="Also save each fold's model (OUT/fold_models/<fold>).")
    ] = False,
) -> None:
    """Run an experiment config: its preprocessing (cached), every fold of its protocol, the
    pooled report, and a model bundle fitted on all subjects (load it with `predict`)."""
    from pathlib import Path

    from microexpr.config import load_config
    from microexpr.train.experiment import run_experiment

    extra = [f"data.root={data}"] if data is not None else []
    cfg = load_config(config, [*extra, *(overrides or [])])
    metrics = run_experiment(
        cfg,
        Path(out),
        max_folds=max_folds,
        cache=cache,
        save_model=save_model,
        save_fold_models=save_fold_models,
        workers=workers,
    )
    _print_metrics(metrics, out)
    if save_model:
        console.print(f"model bundle: {out}/model (microexpr predict {out}/model --data DIR)")


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
    table = model.predict(samples, device=device, cache=cache or default_cache(), progress=True)
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


@app.command("demo")
def demo(
    out: Annotated[str, typer.Option(help="Output folder.")] = "runs/demo",
    subjects: Annotated[int, typer.Option(help="Synthetic subjects (LOSO folds).")] = 8,
    clips: Annotated[int, typer.Option(help="Clips per subject.")] = 12,
    epochs: Annotated[int, typer.Option(help="Epochs per fold.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed for data and training.")] = 0,
) -> None:
    """The whole pipeline on synthetic flow images the project makes itself (no files needed).

    Synthetic clips with planted facial actions -> TV-L1 flow images in the published flat
    layout -> reader -> STSTNet LOSO -> predictions.csv, metrics.json, report.md.
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
    _print_metrics(run_experiment(cfg, out_dir / "result"), f"{out}/result")


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
) -> None:
    """Synthetic micro-expression clips on real faces, written in a database's own layout.

    Layouts: casme2, samm, smic, casme, casme3, mmew, composite, fer2013, ckplus, flow,
    flow-per-subject.
    """
    import time

    import pandas as pd

    from microexpr.synth import write_synthetic

    start = time.perf_counter()
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
        samples, settings, out or default_cache(), workers=workers, retry_failed=retry_failed
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


def main() -> None:
    """Entry point: known data and config errors print one line, not a traceback."""
    from microexpr.errors import DataError

    try:
        app()
    except (DataError, FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        console.print(f"[red]error:[/red] {message}", highlight=False)
        raise SystemExit(1) from None
