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

    table = Table("name", "family", "input", "size", "channels")
    for name in models.list_models():
        entry = models.info(name)
        table.add_row(
            name, entry.family, entry.input_kind, str(entry.input_size), str(entry.in_chans)
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

    if name not in datasets.READERS:
        console.print(str(datasets.READERS.unknown(name)))
        raise typer.Exit(2)
    result = check(name, path, verify_images=images, **_reader_options(option or []))
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


@benchmark_app.command("composite")
def benchmark_composite(
    data: Annotated[
        str, typer.Option(help="MEGC2019 composite flow-image folder (CSV + images).")
    ] = DEFAULT_COMPOSITE,
    model: Annotated[str, typer.Option(help="Registered model name.")] = "ststnet",
    epochs: Annotated[
        int, typer.Option(help="Fixed number of epochs (no selection on test folds).")
    ] = 800,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 5e-5,
    seed: Annotated[
        int, typer.Option(help="Seed for every fold's initialisation and batches.")
    ] = 0,
    shuffle: Annotated[
        bool, typer.Option(help="Shuffle each fold's training samples every epoch.")
    ] = False,
    group_by_label: Annotated[
        bool,
        typer.Option(
            help="Without --shuffle, feed training samples grouped by class, as the published "
            "STSTNet loop reads its label folders."
        ),
    ] = True,
    ensemble: Annotated[
        int, typer.Option(help="Models per fold, each seeded differently; probabilities averaged.")
    ] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    engine: Annotated[
        str, typer.Option(help="auto, stacked (all folds at once) or per_fold.")
    ] = "auto",
    folds_per_call: Annotated[
        int,
        typer.Option(
            help="Folds trained together by the stacked engine (0 = all); smaller groups "
            "save progress more often."
        ),
    ] = 0,
    out: Annotated[
        str, typer.Option(help="Output folder; re-running into it resumes.")
    ] = "runs/composite",
) -> None:
    """MEGC2019 composite LOSO (68 subjects, 3 classes) with the published STSTNet recipe."""
    from pathlib import Path

    from microexpr.config import DataConfig, ExperimentConfig, ModelConfig
    from microexpr.train.experiment import run_experiment
    from microexpr.train.trainer import TrainConfig

    cfg = ExperimentConfig(
        name=f"MEGC2019 composite LOSO, {model}, {epochs} epochs",
        data=DataConfig(name="flow_images", root=data, taxonomy="composite3"),
        model=ModelConfig(name=model),
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            shuffle=shuffle,
            group_by_label=group_by_label,
            device=device,
        ),
        engine=engine,
        folds_per_call=folds_per_call,
        ensemble=ensemble,
    )
    _print_metrics(run_experiment(cfg, Path(out)), out)


@app.command("train")
def train_command(
    config: Annotated[str, typer.Argument(help="Experiment YAML (see configs/).")],
    out: Annotated[str, typer.Option(help="Output folder; re-running into it resumes.")],
    data: Annotated[str | None, typer.Option(help="Dataset root (overrides data.root).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="Override train.device.")] = None,
) -> None:
    """Run an experiment config: every fold of its protocol, then the pooled report."""
    from pathlib import Path

    from microexpr.config import load_config
    from microexpr.train.experiment import run_experiment

    cfg = load_config(config)
    if data is not None:
        cfg.data.root = data
    if epochs is not None:
        cfg.train.epochs = epochs
    if device is not None:
        cfg.train.device = device
    _print_metrics(run_experiment(cfg, Path(out)), out)


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

    from microexpr.config import DataConfig, ExperimentConfig, ModelConfig
    from microexpr.datasets.flow_images import write_flat
    from microexpr.datasets.synthetic import synthetic_flow_images
    from microexpr.train.experiment import run_experiment
    from microexpr.train.trainer import TrainConfig

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

    from microexpr.datasets.synthetic import write_synthetic

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
    dataset: Annotated[str, typer.Argument(help="reader name (see `microexpr datasets list`)")],
    path: Annotated[str, typer.Argument(help="the database folder, as distributed")],
    out: Annotated[str, typer.Option(help="Cache root; results go to OUT/<config-hash>/.")],
    pipeline: Annotated[
        str, typer.Option(help="flow_image, apex_face, face_clip or flow_clip.")
    ] = "flow_image",
    size: Annotated[
        int | None,
        typer.Option(
            help="Output side (default: 28 flow image, 224 face, 128 face clip, 112 flow clip)."
        ),
    ] = None,
    face_size: Annotated[int, typer.Option(help="Aligned face side for flow/spotting.")] = 128,
    region: Annotated[
        str | None, typer.Option(help="apex_face: crop a region (mouth, eyes, brows, nose).")
    ] = None,
    gray: Annotated[bool, typer.Option(help="One-channel face outputs.")] = False,
    frames: Annotated[int, typer.Option(help="Clip pipelines: frames per clip.")] = 16,
    resample: Annotated[str, typer.Option(help="Clip resampling: linear or tim.")] = "linear",
    flow: Annotated[str, typer.Option(help="Flow method: tvl1 or farneback.")] = "tvl1",
    apex: Annotated[
        str, typer.Option(help="Apex when not coded: seed002, flow or middle.")
    ] = "seed002",
    magnify: Annotated[float, typer.Option(help="Eulerian magnification factor (0: off).")] = 0.0,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Try earlier failures again.")] = False,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="reader option KEY=VALUE (repeatable)"),
    ] = None,
    show: Annotated[int, typer.Option(help="Failures to list.")] = 20,
) -> None:
    """Run a preprocessing pipeline over a database, in parallel, cached per sample.

    A second run with the same settings reuses every finished sample; an interrupted run
    resumes. Samples that fail (no face, unreadable frame) are listed and skipped.
    """
    from microexpr import datasets
    from microexpr.preprocess.cache import prepare
    from microexpr.preprocess.pipelines import PrepareConfig

    samples = datasets.load(dataset, path, **_reader_options(option or []))
    config = PrepareConfig(
        pipeline=pipeline,
        size=size,
        face_size=face_size,
        region=region,
        gray=gray,
        num_frames=frames,
        resample=resample,
        flow_method=flow,
        apex_method=apex,
        magnify_alpha=magnify,
    )
    report = prepare(samples, config, out, workers=workers, retry_failed=retry_failed)
    for sample_id, reason in list(report.failed.items())[:show]:
        console.print(f"failed {sample_id}: {reason}", markup=False, highlight=False)
    if len(report.failed) > show:
        console.print(f"... {len(report.failed) - show} more failures (--show N)")
    console.print(
        f"{pipeline}: {report.total} samples -> {report.directory}: {report.computed} computed, "
        f"{report.reused} reused, {len(report.failed)} failed ({report.seconds:.1f} s)",
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
