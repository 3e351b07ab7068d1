"""The ``obliviate`` command line: demo, train, unlearn, tune, evaluate, bench, report, detect, methods."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Machine unlearning you can prove.")
console = Console()
if not console.is_terminal:  # pipes and CI logs: wide enough for the results table
    console.width = 120

DEMO_METHODS = "all"
FORGET_HELP = "or a spec: random:0.1, random:50, class:3, ids:4,8, predicate:SQL"


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse (numbers, lists, null), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@app.command()
def demo(
    dataset: str = typer.Option("digits", help="digits, fashion-mnist, breast-cancer, wine or a .npz file"),
    forget: str = typer.Option("random:0.1", help="random:F, random:COUNT, class:C[,C], ids:I[,I], predicate:SQL"),
    methods: str = typer.Option(DEMO_METHODS, help="comma-separated method names, or 'all'"),
    out: Path = typer.Option(Path("runs/demo"), help="folder for results and models"),
    seed: int = typer.Option(0, help="seed for the split, training and unlearning"),
    epochs: int | None = typer.Option(None, help="override the recipe's training epochs"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 (default: CUDA if present)"),
) -> None:
    """Train an original and two oracles, unlearn with each method, compare everything with the oracle.

    A preset over ``obliviate bench``: the grid lives in OUT/grid (rerun to reuse it); OUT holds the
    table (results.csv / .json), split.json and models/ (original, oracle, retrain = the floor oracle,
    one folder per method)."""
    from obliviate.bench import ConfigError
    from obliviate.bench.jobs import data_of, recipe_of, resolve_device
    from obliviate.bench.presets import demo_config, run_demo

    try:
        cfg = demo_config(dataset, forget, methods, seed=seed, epochs=epochs, device=device)
        ds, spec = cfg.datasets[0], cfg.forget[0]
        data = data_of(ds)
        recipe = recipe_of(ds, data, resolve_device(cfg.device))
        split = spec.split(data, seed) if not spec.needs_scores else None
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    size = f"{split.kind} = {len(split)} examples" if split is not None else spec.label
    console.print(
        f"[bold]{data.name}[/bold]: {len(data.train)} train / {len(data.test)} test / "
        f"{0 if data.val is None else len(data.val)} val; "
        f"forget {size}; recipe {recipe.architecture}, {recipe.epochs} epochs"
    )
    try:
        rows, meta = run_demo(cfg, out)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    _print_table(rows, data.name, meta["forget"], meta["n_forget"])
    console.print(f"results: {out / 'results.csv'}, {out / 'results.json'}; models: {out / 'models'}")


#: (column title, metric, format): what the demo table shows of each report
COLUMNS = [
    ("seconds", "seconds", "{:.3f}"),
    ("x faster", "cost_ratio", "inv"),
    ("forget", "forget_acc", "pct"),
    ("retain", "retain_acc", "pct"),
    ("test", "test_acc", "pct"),
    ("MIA-eff", "mia_efficacy", "pct"),
    ("loss AUC", "loss_auc", "{:.3f}"),
    ("KL", "kl_forget", "{:.4f}"),
    ("ToW", "tow", "{:.3f}"),
    ("Avg.Gap", "avg_gap", "{:.2f}"),
]


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or v != v:
        return "-"
    if fmt == "pct":
        return f"{100 * v:.1f}"
    if fmt == "inv":
        return f"{1 / max(v, 1e-9):.1f}"
    return fmt.format(v)


def _print_table(rows: list[dict], dataset: str, kind: str, n_forget: int) -> None:
    table = Table(title=f"{dataset}: forgetting {kind} ({n_forget} examples), compared with the oracle")
    table.add_column("method", no_wrap=True)
    for title, _, _ in COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    for r in rows:
        name = r["method"] + (" [yellow](rolled back)[/yellow]" if r["diverged"] else "")
        table.add_row(name, *(_cell(r, key, fmt) for _, key, fmt in COLUMNS))
    console.print(table)
    console.print(
        "forget/retain/test: accuracy % (test excludes forgotten classes); MIA-eff: SalUn's SVC MIA-efficacy %; "
        "loss AUC: loss-threshold attack D_f vs test; KL: KL(oracle || model) on D_f; ToW: RUM's tug-of-war (1 is "
        "ideal); Avg.Gap: SalUn's mean gap to the oracle in points (0 is ideal). Ideal for the others: the oracle's "
        "row. 'oracle #2' is a retrain with another seed: its gaps are the noise floor, below which a method "
        "cannot be told from retraining. Seconds: one run (noisy on small data)."
    )


@app.command()
def train(
    dataset: str = typer.Option("digits", help="built-in name or .npz file (ignored with --data)"),
    data: Path | None = typer.Option(
        None,
        help="your own data: a .csv/.tsv/.parquet table (with --target), a folder of class folders of "
        "images, CIFAR binary batches, text rows (.txt/.jsonl/.json/.parquet) or a TOFU / MUSE dump",
    ),
    target: str | None = typer.Option(None, help="table: the column to predict"),
    subject: str | None = typer.Option(None, help="the column naming each row's person or entity"),
    text_column: str | None = typer.Option(None, help="text: the field holding each row's text (default: text)"),
    ignore: list[str] = typer.Option([], help="table: a column not to use as a feature (repeatable)"),
    test_fraction: float = typer.Option(0.2, help="share of rows (of subjects, with --subject) held out for testing"),
    image_size: int | None = typer.Option(None, help="images: resize to SIZE x SIZE (default: the first image's size)"),
    length: int | None = typer.Option(None, help="text: tokens per row (default: the longest row; MUSE: 128)"),
    out: Path = typer.Option(Path("runs/original"), help="folder to write the model to"),
    seed: int = typer.Option(0, help="seed for the train/test split and for training"),
    epochs: int | None = typer.Option(None, help="override the recipe's epochs"),
    steps: int | None = typer.Option(None, help="text: override the language model recipe's training steps"),
    device: str | None = None,
) -> None:
    """Train a model with the data's default recipe and save it (safetensors + manifest).

    With --data, the manifest records how the file was read (options, the encoder or tokenizer beside
    the model, and a fingerprint of the training rows), so `obliviate forget` reads the same rows again."""
    import obliviate as ob

    if data is not None:
        from obliviate.train.runs import train_on_file

        read: dict[str, Any] = {"target": target, "subject": subject, "text_column": text_column}
        read |= {"ignore": tuple(ignore), "test_fraction": test_fraction, "image_size": image_size, "length": length}
        try:
            _, rows, manifest = train_on_file(
                data,
                out,
                seed=seed,
                epochs=epochs,
                steps=steps,
                device=device,
                **{k: v for k, v in read.items() if v not in (None, ())},
            )
        except (ValueError, FileNotFoundError, ImportError) as e:
            _fail(str(e))
        recipe, scores = manifest["recipe"], manifest["scores"]
        what = "token accuracy" if recipe["architecture"] == "tiny-gpt2" else "accuracy"
        console.print(
            f"trained {recipe['architecture']} on {rows.name} ({manifest['data']['kind']}: {manifest['n_train']} "
            f"training / {manifest['n_test']} test rows{f', subject {rows.subject}' if rows.subject else ''}) in "
            f"{manifest['train_seconds']:.1f} s: test {what} {100 * scores['test_acc']:.1f}%; saved to {out}"
        )
        return
    if any(v is not None for v in (target, subject, text_column, image_size, length)) or ignore:
        _fail("--target, --subject, --text-column, --ignore, --image-size and --length go with --data FILE")
    try:
        builtin = ob.datasets.load(dataset)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    recipe = ob.Recipe.default_for(builtin)
    if epochs is not None:
        recipe = recipe.replace(epochs=epochs)
    model = ob.train(recipe, builtin.train, seed=seed, device=device)
    test_acc = ob.metrics.accuracy(*ob.objectives.ClassificationTask(builtin.num_classes).predict(model, builtin.test))
    ob.save_model(model, out, {"dataset": dataset, "role": "original", "seed": seed})
    console.print(
        f"trained {recipe.architecture} on {builtin.name}: test accuracy {100 * test_acc:.1f}%; saved to {out}"
    )


def _load_inputs(
    model_dir: Path,
    dataset: str | None,
    seed: int,
    split_file: Path | None,
    forget: str | None,
    forget_ids: Path | None,
):
    """A saved model, its dataset (from the manifest unless given) and the forget split, given as
    exactly one of a split file, a spec or an id file."""
    import obliviate as ob
    from obliviate.data.splits import ForgetSpec

    model, manifest = ob.load_model(model_dir)
    name = dataset or manifest.get("dataset")
    if not name:
        raise ValueError("the model's manifest names no dataset: pass --dataset")
    if dataset is None and "data" in manifest:  # trained with `obliviate train --data FILE`: read it again
        data = ob.datasets.from_run(model_dir).with_validation(0.5, seed)
    else:
        data = ob.datasets.load(name, val_fraction=0.5, seed=seed)
    if sum(x is not None for x in (split_file, forget, forget_ids)) != 1:
        raise ValueError("give exactly one of --split, --forget or --forget-ids")
    if split_file is not None:
        split = ob.ForgetSplit.load(split_file)
    elif forget is not None:
        split = ForgetSpec.parse(forget).split(data, seed)
    elif forget_ids is not None:
        split = ob.ForgetSplit.from_ids(data.train, [int(t) for t in forget_ids.read_text().split()])
    else:  # unreachable: exactly one was given (checked above)
        raise ValueError("give exactly one of --split, --forget or --forget-ids")
    return model, data, split


@app.command()
def unlearn(
    model_dir: Path = typer.Argument(..., help="folder written by `obliviate train` (or save_model)"),
    forget_ids: Path | None = typer.Option(None, help="text file of training-set positions, one per line"),
    forget: str | None = typer.Option(None, help=FORGET_HELP),
    split_file: Path | None = typer.Option(None, "--split", help="or a split.json (ForgetSplit.save)"),
    method: str = typer.Option("scrub", help="method name (see `obliviate methods`)"),
    param: list[str] = typer.Option([], help="hyper-parameter override key=value (repeatable)"),
    dataset: str | None = typer.Option(None, help="dataset (default: the one in the model's manifest)"),
    out: Path = typer.Option(Path("runs/unlearned"), help="folder for the unlearned model"),
    seed: int = 0,
    device: str | None = None,
) -> None:
    """Unlearn a forget set from a saved model; writes the new model and its record."""
    import obliviate as ob

    try:
        model, data, split = _load_inputs(model_dir, dataset, seed, split_file, forget, forget_ids)
        result = ob.unlearn(
            model,
            data.train,
            split,
            method=method,
            seed=seed,
            val=data.val,
            task=ob.objectives.task_of(data),
            device=device,
            **_parse_params(param),
        )
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    result.save(out)
    report = ob.evaluate(result.model, data, split)
    if "forget_acc" in report:
        summary = f"forget acc {100 * report['forget_acc']:.1f}%, test acc {100 * report['test_acc']:.1f}%"
    else:  # a language model: memorization accuracy and verbatim extraction of the forget rows
        summary = f"forget MA {report['forget_ma']:.2f}, extracted {100 * report['extraction_forget']:.0f}%"
    console.print(
        f"{method}: {len(split)} examples forgotten in {result.seconds:.2f}s"
        + (" [yellow](diverged: rolled back)[/yellow]" if result.diverged else "")
        + f"; {summary}; saved to {out}"
    )


@app.command()
def tune(
    model_dir: Path = typer.Argument(..., help="saved original (`obliviate train`)"),
    method: str = typer.Option(..., help="method to tune (see `obliviate methods`)"),
    forget_ids: Path | None = typer.Option(None, help="text file of training-set positions, one per line"),
    forget: str | None = typer.Option(None, help=FORGET_HELP),
    split_file: Path | None = typer.Option(None, "--split", help="or a split.json (ForgetSplit.save)"),
    budget: int = typer.Option(8, help="trials: the defaults, then a seeded sample of the method's grid"),
    objective: str = typer.Option("avg_gap", help="avg_gap (minimised), tow or tow_mia (maximised)"),
    dataset: str | None = typer.Option(None, help="dataset (default: the one in the model's manifest)"),
    out: Path = typer.Option(Path("runs/tune.json"), help="file for every trial and the best parameters"),
    seed: int = 0,
    device: str | None = None,
) -> None:
    """Search a method's hyper-parameters against a validation oracle (the test set is not read)."""
    import obliviate as ob

    try:
        model, data, split = _load_inputs(model_dir, dataset, seed, split_file, forget, forget_ids)
        result = ob.tune(
            method, data, split, original=model, budget=budget, objective=objective, seed=seed, device=device
        )
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    result.save(out)
    console.print(result.trials.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    flags = " ".join(f"--param {k}={v}" for k, v in result.best_params.items())
    console.print(
        f"best {objective} {result.best_score:.4g} on the validation set: {result.best_params}; "
        f"saved to {out}\n  obliviate unlearn {model_dir} --method {method} {flags}"
    )


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="saved model (for --protocol neurips23: the original)"),
    oracle: list[Path] = typer.Option([], help="saved oracle(s); a second one gives the noise floor"),
    split_file: Path | None = typer.Option(None, "--split", help="split.json written by demo / ForgetSplit.save"),
    forget: str | None = typer.Option(None, help=FORGET_HELP),
    forget_ids: Path | None = typer.Option(None, help="or a file of training-set positions"),
    dataset: str | None = typer.Option(None, help="dataset (default: the model manifest's)"),
    metrics: str | None = typer.Option(None, help="comma-separated metric names (default: all applicable)"),
    protocol: str = typer.Option("oracle", help="oracle or neurips23"),
    method: str | None = typer.Option(None, help="neurips23: the method to re-run"),
    n_models: int = typer.Option(32, help="neurips23: oracles and unlearning runs"),
    out: Path | None = typer.Option(None, help="write the report as CSV here"),
    seed: int = 0,
) -> None:
    """Evaluate a saved model against saved oracles (value, oracle, gap, noise floor per metric)."""
    import obliviate as ob

    try:
        model, data, split = _load_inputs(model_dir, dataset, seed, split_file, forget, forget_ids)
        oracles = [ob.load_model(p)[0] for p in oracle]
        report = ob.evaluate(
            model,
            data,
            split,
            oracle=oracles or None,
            protocol=protocol,
            method=method,
            n_models=n_models,
            seed=seed,
            metrics=metrics.split(",") if metrics else None,
        )
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    frame = report.to_frame()
    table = Table(title=f"{model_dir} on {data.name}, forgetting {split.kind} ({len(split)} examples)")
    for col in frame.columns:
        table.add_column(col, justify="left" if col in ("metric", "ideal") else "right")
    for _, r in frame.iterrows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r))
    console.print(table)
    if out is not None:
        frame.to_csv(out, index=False)
        console.print(f"report: {out}")


@app.command()
def bench(
    config: Path = typer.Argument(..., help="a bench YAML config, e.g. benchmarks/quick.yaml"),
    out: Path | None = typer.Option(None, help="results folder (default runs/bench/<config name>)"),
    device: str | None = typer.Option(None, help="auto, cpu, cuda, cuda:1 (default: the config's, else auto)"),
    cache: Path | None = typer.Option(None, help="share originals, oracles and tunings between folders"),
    executor: str = typer.Option("in-process", help="where jobs run: in-process or ray"),
    ray_address: str | None = typer.Option(None, help="join this Ray cluster (default: start a local one)"),
    report: bool = typer.Option(True, help="write report.html when the grid is done"),
) -> None:
    """Run a grid of datasets x forget sets x methods x seeds; rerun to resume (finished cells are kept)."""
    from obliviate.bench import ConfigError, load_config, run
    from obliviate.executor import get_executor
    from obliviate.report.html import method_order

    try:
        cfg = load_config(config)
        if ray_address and executor != "ray":
            _fail("--ray-address needs --executor ray")
        ex = get_executor(executor, **({"address": ray_address} if ray_address else {}))
        result = run(cfg, out, device=device, cache=cache, executor=ex)
    except (ConfigError, ImportError) as e:
        _fail(str(e))
    console.print(
        f"{result.computed} cells computed, {result.reused} reused, {result.seconds / 60:.1f} min: {result.out}"
    )
    table = Table(title=f"{cfg.name}: {cfg.composite}, mean ± 95% CI over {len(cfg.seeds)} seeds")
    for col in ("dataset", "forget", "method", cfg.composite, "floor"):
        table.add_column(col, justify="left" if col in ("dataset", "forget", "method") else "right")
    for (dataset, forget), sec in result.summary.groupby(["dataset", "forget"], sort=False):
        board = sec[sec.metric == cfg.composite].set_index("method")
        for m in method_order(sec, cfg.composite)[0]:  # the report's order: oracle B (the floor) first
            r = board.loc[m]
            ci = "" if r.ci95 != r.ci95 else f" ± {r.ci95:.2f}"
            table.add_row(dataset, forget, m, f"{r['mean']:.2f}{ci}", f"{r.floor:.2f}")
    console.print(table)
    if report:
        from obliviate.report import build_report

        console.print(f"report: {build_report(result.out)}")


@app.command("report")
def report_cmd(
    results: Path = typer.Argument(..., help="a bench results folder"),
    out: Path | None = typer.Option(None, help="HTML file (default RESULTS/report.html)"),
    composite: str | None = typer.Option(None, help="metric to sort leaderboards by (default: the config's)"),
    markdown: bool = typer.Option(False, help="print the leaderboards as Markdown instead (for a README)"),
) -> None:
    """Write one self-contained HTML report (tables, plots, manifest) for a bench results folder."""
    from obliviate.report import build_report
    from obliviate.report import markdown as to_markdown

    try:
        if markdown:
            print(to_markdown(results, composite=composite), end="")
        else:
            console.print(f"report: {build_report(results, out, composite=composite)}")
    except ValueError as e:
        _fail(str(e))


@app.command()
def detect(
    dataset: str = typer.Option("digits", help="digits, fashion-mnist, breast-cancer, wine or a .npz file"),
    data: Path | None = typer.Option(
        None, help="your data instead: a model folder from `obliviate train --data` (its data) or a data file"
    ),
    noise: float = typer.Option(
        0.0,
        help="inject this fraction of symmetric label noise first (a demo with "
        "ground truth: precision and recall are reported)",
    ),
    unlearn: str | None = typer.Option(
        None,
        help="with --noise: unlearn the detected set with this method and "
        "compare test accuracy with the original and clean oracles",
    ),
    param: list[str] = typer.Option([], help="method parameter key=value for --unlearn (repeatable)"),
    outliers: float = typer.Option(0.01, help="fraction reported as memorized outliers (learning-event proxy)"),
    folds: int = typer.Option(5, help="cross-validation folds for out-of-sample probabilities"),
    top: int = typer.Option(15, help="rows to print"),
    out: Path | None = typer.Option(None, help="CSV of every finding (id first: a forget list)"),
    kind: str = typer.Option("all", help="what --out lists: all, label (label issues) or outlier"),
    seed: int = typer.Option(0),
) -> None:
    """Find label issues (cleanlab, cross-validated) and memorized outliers: the data worth forgetting."""
    import obliviate as ob
    from obliviate.evaluation.detect import detect_and_unlearn, inject_label_noise

    kinds = {"all": None, "label": "label issue", "outlier": "outlier"}
    if kind not in kinds:
        _fail(f"--kind must be one of {sorted(kinds)}, got {kind!r}")
    if data is not None:
        from obliviate.evidence import open_data

        try:
            loaded = open_data(data)[0] if (data / "manifest.json").exists() else ob.datasets.from_file(data)
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
    else:
        loaded = ob.datasets.load(dataset)
    recipe = ob.Recipe.default_for(loaded)
    if unlearn is not None:
        if not noise:
            _fail("--unlearn needs --noise: without injected noise there is no clean oracle to prove against")
        params = _parse_params(param) or ({"epochs": 5, "lr": 1e-3} if unlearn == "finetune" else {})
        r = detect_and_unlearn(loaded, recipe, noise=noise, method=unlearn, seed=seed, **params)
        console.print(
            f"injected {r['injected']} wrong labels ({100 * noise:g}%); flagged {r['flagged']}: "
            f"precision {r['precision']:.2f}, recall {r['recall']:.2f} ({r['detect_seconds']:.1f} s)"
        )
        table = Table(title=f"test accuracy: unlearning the flagged set with {unlearn} {params or ''}")
        for col in (
            "original (noisy labels)",
            f"unlearned ({unlearn})",
            "oracle (retrained without the noise)",
            "clean labels",
        ):
            table.add_column(col, justify="right")
        table.add_row(*(f"{100 * r[k]:.2f}%" for k in ("test_original", "test_unlearned", "test_oracle", "test_clean")))
        console.print(table)
        console.print(f"unlearning took {r['unlearn_seconds']:.2f} s; training {r['train_seconds']:.2f} s")
        return
    train, injected = loaded.train, None
    if noise:
        train, injected = inject_label_noise(loaded.train, noise, loaded.num_classes, seed=seed)
    model = ob.train(recipe, train, seed=seed)
    found = ob.detect(train, recipe, model=model, folds=folds, outlier_fraction=outliers, seed=seed)
    t = found.table
    issues = t[t.kind == "label issue"]
    console.print(f"{len(issues)} label issues and {len(t) - len(issues)} outliers among {len(train)} examples")
    if injected is not None:
        import numpy as np

        hit = np.isin(issues["id"].to_numpy(), injected.numpy())
        console.print(
            f"injected {len(injected)}: precision {hit.mean() if len(hit) else 0:.2f}, "
            f"recall {hit.sum() / len(injected):.2f}"
        )
    table = Table(title="most suspicious first")
    for col in ("id", "kind", "score", "given", "suggested", "why"):
        table.add_column(col, justify="left" if col in ("kind", "why") else "right")
    for _, r in t.head(top).iterrows():
        table.add_row(str(r.id), r.kind, f"{r.score:.2f}", str(r.given_label), str(r.suggested_label), r.why)
    console.print(table)
    if out is not None:
        from obliviate.io import atomic_write_text

        listed = t if kinds[kind] is None else t[t.kind == kinds[kind]]
        atomic_write_text(out, listed.to_csv(index=False))
        console.print(
            f"findings: {out} ({len(listed)}); to forget them: obliviate forget MODEL --request 'ids: @{out}' ..."
        )


@app.command("lm-demo")
def lm_demo(
    method: list[str] = typer.Option(
        [],
        help="LABEL=METHOD[:key=value,...] to run instead of the defaults "
        "(repeatable), e.g. 'ga-seq=ga:stop=sequence,gamma_stat=max'",
    ),
    steps: int = typer.Option(800, help="training steps of the original and the oracles (batch 32)"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/lm-demo"), help="folder for the grid (rerun to reuse it) and results.json"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 (default: CUDA if present)"),
) -> None:
    """Memorize fictitious people's secrets in a tiny GPT, forget 20 people, judge per sequence vs the oracle.

    A preset over ``obliviate bench`` (the grid of benchmarks/lm-people.yaml): original, oracle A and
    oracle B (the floor) trained once under OUT/grid, every method row judged by ob.evaluate, also after
    relearning half the forget people."""
    from obliviate.bench import ConfigError
    from obliviate.bench.presets import lm_demo_config, run_lm_demo

    methods = None
    if method:
        methods = []
        for spec in method:
            label, _, rest = spec.partition("=")
            name, _, params = rest.partition(":")
            if not name or not label:
                _fail(f"--method {spec!r}: expected LABEL=METHOD[:key=value,...]")
            methods.append((label, name, _parse_params([kv for kv in params.split(",") if kv])))
    try:
        cfg = lm_demo_config(methods, steps=steps, seed=seed, device=device)
        console.print(
            f"people scenario: 60 fictitious people, 20 forgotten; tiny GPT-2 trained {steps} steps; "
            f"{len(cfg.methods)} rows; grid under {out / 'grid'}"
        )
        tables, result = run_lm_demo(cfg, out)
    except (ConfigError, ValueError, RuntimeError) as e:
        _fail(str(e))
    for title, head, body in tables:
        table = Table(title=title)
        for i, col in enumerate(head):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in body:
            table.add_row(*row)
        console.print(table)
    console.print(
        f"computed {result.computed} cells, reused {result.reused}, in {result.seconds:.0f} s; "
        f"results: {out / 'results.json'}; report: obliviate report {out / 'grid'}"
    )


@app.command("diffusion-demo")
def diffusion_demo(
    forget: int = typer.Option(3, help="the digit class to forget"),
    steps: int = typer.Option(300, help="training steps of the original and each oracle (batch 64)"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/diffusion-demo"), help="folder for results.json and grids/*.png"),
) -> None:
    """Forget a digit from a class-conditional diffusion model; judge each method against the oracle."""
    from obliviate.diffusion import DemoConfig, format_table, run_demo

    cfg = DemoConfig(forget=forget, seed=seed)
    try:
        result = run_demo(replace(cfg, recipe=cfg.recipe.replace(steps=steps)), out=out, echo=console.print)
    except ValueError as e:
        _fail(str(e))
    head, body = format_table(result)
    table = Table(title=f"forget digit {forget}: each model vs oracle A (floor = |oracle B − oracle A|)")
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in body:
        table.add_row(*row)
    console.print(table)
    for label, notes in result["notes"].items():
        console.print(f"[yellow]{label}[/]: {'; '.join(notes)}")
    console.print(f"done in {result['seconds']:.0f} s; results: {out / 'results.json'}, grids: {out / 'grids'}")


@app.command("methods")
def list_methods() -> None:
    """List registered unlearning methods and their default hyper-parameters."""
    import dataclasses

    import obliviate as ob

    table = Table(title="methods")
    table.add_column("name")
    table.add_column("defaults")
    for name in ob.methods.available():
        cls = ob.methods.get(name)
        defaults = {f.name: f.default for f in dataclasses.fields(cls.Params)}
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in defaults.items()))
    console.print(table)


#: exit codes of forget / verify: the verdict (bad input exits 2, as every command)
VERDICT_EXIT = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}


def _show_request(resolution: Any, plan: Any) -> None:
    console.print(f"[bold]{resolution.describe()}[/bold]")
    console.print(resolution.sample.to_string(index=False, max_colwidth=60))
    if len(resolution.split) > len(resolution.sample):
        console.print(f"... and {len(resolution.split) - len(resolution.sample)} more rows")
    for c in resolution.candidates:
        console.print(
            f"  [yellow]review[/yellow]: row {c.id} resembles the matched rows (TF-IDF {c.score:.2f}); not added"
        )
    console.print(f"method {plan.method}: {plan.method_why}")
    console.print(f"checks: {plan.mode}: {plan.mode_why}")
    for note in plan.notes:
        console.print(f"  {note}")


def _print_checks(checks: list[Any], verdict: str) -> None:
    table = Table(title=f"verdict: {verdict}")
    for col in ("check", "required", "value", "verdict"):
        table.add_column(col)
    for c in checks:
        v = c.value if not isinstance(c.value, dict) else {k: x for k, x in c.value.items() if k != "phi"}
        value = f"{v:.4g}" if isinstance(v, float) else str(v)
        table.add_row(c.id, "yes" if c.required else "no", value, c.verdict)
    console.print(table)


@app.command("forget")
def forget_cmd(
    model_dir: Path = typer.Argument(..., help="model folder (obliviate train --data, or an earlier forget)"),
    request: str = typer.Option(
        ..., help="ids: 3,17 | ids: @file | subject = 'u-4711' | entity: 'name' | an SQL condition on the table"
    ),
    out: Path = typer.Option(..., help="new folder for the model, evidence.json/html and ledger.jsonl"),
    data: Path | None = typer.Option(None, help="the training data (default: the path in the model's manifest)"),
    method: str = typer.Option("auto", help="auto or a method name (see `obliviate methods`)"),
    param: list[str] = typer.Option([], help="method hyper-parameter key=value (repeatable)"),
    oracle: str = typer.Option("auto", help="auto (retrain oracles if affordable), yes or no"),
    oracles: int = typer.Option(8, help="oracles retrained for the prediction intervals"),
    shadows: int = typer.Option(16, help="shadow models for the oracle-free per-example attack"),
    budget: float = typer.Option(120.0, help="seconds the checks may spend on retraining (oracle=auto)"),
    subject: str | None = typer.Option(None, help="the subject column (default: the one the model was trained with)"),
    request_id: str | None = typer.Option(None, help="your ticket id for the request (DSR-0142)"),
    retrain_after: int | None = typer.Option(
        None, help="policy: the N-th approximate request in a row is an exact retrain instead (drift bound)"
    ),
    seed: int = 0,
    device: str | None = None,
) -> None:
    """Resolve a deletion request, unlearn it, check the result and write the evidence bundle."""
    from obliviate.evidence import forget, open_data

    try:
        rows, source = open_data(model_dir, data)
        bundle = forget(
            model_dir,
            rows,
            request,
            out,
            method=method,
            params=_parse_params(param),
            oracle=oracle,
            n_oracles=oracles,
            n_shadows=shadows,
            budget=budget,
            seed=seed,
            subject_column=subject,
            request_id=request_id,
            data_source=source,
            device=device,
            show=_show_request,
            retrain_after=retrain_after,
        )
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    from obliviate.evidence import Check

    _print_checks([Check.from_dict(c) for c in bundle.evidence["checks"]], bundle.verdict)
    reused = " (already done: the folder holds this request's evidence)" if bundle.reused else ""
    console.print(f"evidence: {out / 'evidence.json'}, {out / 'evidence.html'}; ledger: {out / 'ledger.jsonl'}{reused}")
    raise typer.Exit(VERDICT_EXIT[bundle.verdict])


@app.command("verify")
def verify_cmd(
    artifact: Path = typer.Argument(..., help="the deployed copy: a model folder or a .safetensors file"),
    evidence: Path = typer.Option(..., help="the evidence.json written by `obliviate forget`"),
    data: Path | None = typer.Option(None, help="the training data (default: the path the evidence's model records)"),
    recheck: bool = typer.Option(False, help="re-run the checks even when the weights are the verified ones"),
    device: str | None = None,
) -> None:
    """Re-check that a deployed artifact of an unlearned model still passes the evidence's checks."""
    from obliviate.evidence import open_data, verify

    try:
        rows, _ = open_data(evidence.parent, data)
        result = verify(artifact, evidence, rows, recheck=recheck, device=device)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    verdict = result.verdict["overall"]
    console.print(
        "same weights as the verified model: the recorded checks stand"
        if result.same_weights and not recheck
        else "checks re-run on the artifact against the references recorded at forget time"
    )
    _print_checks(result.checks, verdict)
    raise typer.Exit(VERDICT_EXIT[verdict])


ledger_app = typer.Typer(no_args_is_help=True, help="The hash-chained record of every request applied to a model.")
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify")
def ledger_verify(folder: Path = typer.Argument(..., help="a model folder with ledger.jsonl")) -> None:
    """Re-check every link of the ledger and the files its entries name (exit 0 ok, 1 broken, 2 unreadable)."""
    from obliviate.evidence import verify_ledger

    report = verify_ledger(folder)
    for note in report.notes:
        console.print(f"  {note}")
    console.print(("[green]" if report.ok else "[red]") + str(report) + ("[/green]" if report.ok else "[/red]"))
    raise typer.Exit(0 if report.ok else 2 if report.unreadable else 1)


@ledger_app.command("head")
def ledger_head(folder: Path = typer.Argument(..., help="a model folder with ledger.jsonl")) -> None:
    """Print SEQ:HASH of the newest entry, to keep where the folder's writer cannot change it."""
    from obliviate.evidence import head

    try:
        print(head(folder))
    except ValueError as e:
        _fail(str(e))


def main() -> None:
    app()
