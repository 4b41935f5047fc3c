"""Command-line interface: ``pdstudy <verb> --help`` documents every verb."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pdstudy import __version__
from pdstudy.audit import write_audit
from pdstudy.core.io import write_csv, write_json
from pdstudy.core.params import PROFILES, load_profile
from pdstudy.data.manifest import ManifestError
from pdstudy.data.preprocess import PrepareConfig, prepare
from pdstudy.data.synth import PHASE_STYLES, generate_cohort
from pdstudy.data.verify import default_listing, verify_cohort, write_listing


def _cmd_synth(args: argparse.Namespace) -> int:
    manifest = generate_cohort(args.out, patients=args.patients, seed=args.seed, slices=args.slices,
                               size=args.size, clinical_signal=args.clinical_signal, phase_style=args.phase_style,
                               all_phases=args.all_phases, sites=args.sites, site_shift=args.site_shift,
                               site_poor=args.site_poor, show_progress=not args.quiet)
    print(f"synthetic cohort written: {manifest}")
    return 0


#: ``pdstudy prepare``'s settings without --profile (the paper's canvas; one worker per core).
PREPARE_DEFAULTS = {"image_size": 256, "fov_mm": 360.0, "workers": 0}


def prepare_settings(profile: str | None = None, *, size: int | None = None, fov_mm: float | None = None,
                     workers: int | None = None) -> dict[str, int | float]:
    """Settings of ``pdstudy prepare``: explicit options, else the profile's values, else :data:`PREPARE_DEFAULTS`.

    Parameters
    ----------
    profile : {"quick", "paper"}, optional
        Profile whose ``image_size``, ``fov_mm`` and ``workers`` fill the options not given, so that a cache
        built by hand is the one ``pdstudy run --profile`` (same manifest and data folder) reuses.
    size, fov_mm, workers : optional
        ``--size``, ``--fov-mm`` and ``--workers``; None when not given. ``workers`` 0 = one per CPU core.

    Returns
    -------
    dict
        ``image_size``, ``fov_mm`` and ``workers``.
    """
    base = dict(PREPARE_DEFAULTS)
    if profile is not None:
        values = load_profile(profile)
        base.update({key: values[key] for key in base if key in values})
    given = {"image_size": size, "fov_mm": fov_mm, "workers": workers}
    base.update({key: value for key, value in given.items() if value is not None})
    return {"image_size": int(base["image_size"]), "fov_mm": float(base["fov_mm"]), "workers": int(base["workers"])}


def _cmd_prepare(args: argparse.Namespace) -> int:
    settings = prepare_settings(args.profile, size=args.size, fov_mm=args.fov_mm, workers=args.workers)
    config = PrepareConfig(image_size=settings["image_size"], fov_mm=settings["fov_mm"])
    top_k = load_profile(args.profile)["top_k"] if args.profile else None  # override warnings: < top_k slices
    cohort = prepare(args.manifest, args.cache, config=config, workers=settings["workers"] or None,
                     show_progress=not args.quiet, force=args.force, top_k=top_k)
    qc_copy = write_csv(Path(args.cache) / "qc.csv", cohort.qc)
    print(f"slice cache: {cohort.root}")
    print(f"qc: {qc_copy} ({len(cohort.included)} included of {len(cohort.qc)} patients, "
          f"{cohort.meta['n_slices']} slices of {config.image_size} px at {config.pixel_mm:.3g} mm/pixel"
          f"{f', profile {args.profile}' if args.profile else ''})")
    summary = cohort.exclusion_summary()
    if len(summary):
        print("exclusions by reason:")
        for reason, k in summary.items():
            print(f"  {k:4d}  {reason}")
    warned = cohort.warning_summary()
    if len(warned):
        print("warnings by category (patients; details in qc.csv):")
        for category, k in warned.items():
            print(f"  {k:4d}  {category}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    listing = args.listing or default_listing(args.manifest)
    if args.write:
        path = write_listing(args.manifest, listing, show_progress=not args.quiet)
        print(f"listing written: {path}")
        return 0
    rep = verify_cohort(args.manifest, listing, show_progress=not args.quiet)
    print(f"{rep.matched} file(s) match {listing}")
    for label, items in (("changed", rep.changed), ("missing", rep.missing), ("not in listing", rep.extra)):
        for item in items[:20]:
            print(f"  {label}: {item}")
        if len(items) > 20:
            print(f"  ... {len(items) - 20} more {label}")
    print("OK: identical data" if rep.ok else "MISMATCH: the cohorts differ")
    return 0 if rep.ok else 1


def _cmd_run(args: argparse.Namespace) -> int:
    from pdstudy.study.notebooks import parse_overrides, run_notebooks  # lazy: torch, papermill only for this verb

    only = [s for part in (args.only or []) for s in part.split(",")] or None
    run = run_notebooks(profile=args.profile, manifest=args.manifest, out=args.out, only=only,
                        overrides=parse_overrides(args.param or []), data_dir=args.data_dir,
                        progress=not args.quiet)
    print(f"run finished: {run.root}")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    csv_path, md_path = write_audit(args.out)
    print(f"paper audit written: {csv_path} and {md_path}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import time

    from pdstudy.study.bench import format_bench_table, machine_info, run_bench  # lazy: torch only for this verb
    from pdstudy.study.bench_clinical import format_clinical_table, run_clinical_bench

    if args.clinical and not args.smoke:
        results = {"smoke": False, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "clinical": run_clinical_bench(workdir=args.workdir), "machine": machine_info()}
    else:
        results = run_bench(smoke=args.smoke, skip_run=args.skip_run, workdir=args.workdir)
        if args.smoke:
            results["clinical"] = run_clinical_bench(smoke=True, workdir=args.workdir)
    path = write_json(args.json, results)
    if "preprocess_speedup" in results:
        print(format_bench_table(results))
    if "clinical" in results:
        print(format_clinical_table(results["clinical"]))
    print(f"results written: {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pdstudy.study.jobs import load_train_config, run_job  # lazy: torch only for this verb

    spec = load_train_config(args.config)
    summary = run_job(spec, progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 reports
        print(f"trained {summary['method']} seed {summary['seed']} fold {summary['fold']} on "
              f"{summary['world_size']} process(es), global batch {summary['global_batch_size']} "
              f"(per process {summary['per_process_batch_size']}); stages reused: {summary['stages_reused']}")
        print(f"predictions: {Path(spec.parameters['run_dir']) / 'predictions' / summary['prediction_file']}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pdstudy.study.sweeps import sweep  # lazy: torch only for this verb

    report = sweep(args.grid, args.executor, args.out, collect_only=args.collect, dry_run=args.dry_run,
                   progress=not args.quiet)
    if not args.dry_run:
        print(f"{len(report.jobs) - len(report.failed)} of {len(report.jobs)} job(s) finished; "
              f"submitted {report.submitted}, skipped {report.skipped} already finished")
        print(f"predictions collected in {len(report.run_dirs)} run director"
              f"{'y' if len(report.run_dirs) == 1 else 'ies'} under {report.out}")
        print(f"status of every job: {report.out / 'sweep' / 'status.csv'}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The ``pdstudy`` argument parser with one sub-parser per verb."""
    p = argparse.ArgumentParser(prog="pdstudy", description="Re-run the Progressive Distill study on a DICOM cohort.")
    p.add_argument("--version", action="version", version=f"pdstudy {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    s = sub.add_parser("synth", help="write the synthetic DICOM cohort and its manifest",
                       description="Write a synthetic CT cohort as DICOM files plus manifest.csv.")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--patients", type=int, default=164, help="screened patients (default 164, as the paper)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--slices", type=int, default=24, help="slices per series (default 24)")
    s.add_argument("--size", type=int, default=128, help="matrix size in pixels (default 128)")
    s.add_argument("--clinical-signal", type=float, default=1.0,
                   help="0-1: how strongly the clinical covariates depend on the response (default 1: the paper's "
                        "Table 1 margins per response group; 0: independent of it)")
    s.add_argument("--phase-style", choices=PHASE_STYLES, default=None,
                   help="phase tags of every patient's series (explicit: named in SeriesDescription; protocol: in "
                        "ProtocolName; generic: nowhere); default: drawn per patient")
    s.add_argument("--all-phases", action="store_true",
                   help="arterial, portal-venous and non-contrast series for every patient with a portal-venous "
                        "series (default: non-contrast for about 40%%)")
    s.add_argument("--sites", type=int, default=2,
                   help="sites acquiring the cohort, 1-4 (default 2: site A as the single-site generator, site B with "
                        "a sharper kernel, 3 mm slices, 100 kVp, smaller pixels, more noise, +8 HU)")
    s.add_argument("--site-shift", type=float, default=1.0,
                   help="0-2: how far the sites after A acquire from A (default 1; 0: every site acquires like A)")
    s.add_argument("--site-poor", type=float, default=1.0,
                   help="> 0: weight of poor response at every site after A (default 1: the same poor share "
                        "everywhere)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("prepare", help="preprocess DICOM into the slice cache and write qc.csv",
                       description="Select the portal-venous series, window, resample and cache every patient. "
                                   "With --profile, the canvas and workers are that profile's, so `pdstudy run "
                                   "--profile P --manifest M --data-dir D` reuses a cache built with --cache D/cache.")
    s.add_argument("--manifest", required=True, type=Path, help="cohort manifest CSV")
    s.add_argument("--cache", required=True, type=Path,
                   help="cache folder (qc.csv is written here; a run with --data-dir D reads D/cache)")
    canvases = "; ".join(f"{name}: {prepare_settings(name)['image_size']} px, {prepare_settings(name)['fov_mm']:g} mm"
                         for name in PROFILES)
    s.add_argument("--profile", choices=PROFILES, default=None,
                   help=f"take image_size, fov_mm and workers from this profile ({canvases}); --size, --fov-mm "
                        "and --workers still win")
    s.add_argument("--size", type=int, default=None,
                   help="output canvas in pixels (default: the profile's, else 256 as the paper)")
    s.add_argument("--fov-mm", type=float, default=None,
                   help="physical canvas width in mm (default: the profile's, else 360)")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the profile's, else 0 = one per CPU core)")
    s.add_argument("--force", action="store_true", help="rebuild even if a matching cache exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("verify", help="check (or --write) a SHA-256 listing of the cohort's files",
                       description="Compare every file below each patient's dicom_dir (all files, not only DICOM: "
                                   "notes, masks and exports too) with a SHA-256 listing whose lines are "
                                   "'<sha256>  <patient_id>/<path below dicom_dir>'.")
    s.add_argument("--manifest", required=True, type=Path, help="cohort manifest CSV")
    s.add_argument("--listing", type=Path,
                   help="listing file (default: the manifest's name with the suffix .sha256, beside it: "
                        "manifest.csv -> manifest.sha256)")
    s.add_argument("--write", action="store_true", help="write the listing instead of checking it")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_verify)

    s = sub.add_parser("run", help="execute the notebooks with papermill",
                       description="Execute the numbered notebooks in order into a run directory.")
    s.add_argument("--profile", choices=["quick", "paper"], default="quick", help="parameter profile (default quick)")
    s.add_argument("--manifest", type=Path, help="cohort manifest (default: the synthetic cohort)")
    s.add_argument("--out", type=Path, help="run directory (default: reports/<profile> of the checkout)")
    s.add_argument("--only", action="append", help="notebook numbers, e.g. --only 01,03")
    s.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="override a notebook parameter")
    s.add_argument("--data-dir", type=Path, help="synthetic cohort and cache root (default data/ in the checkout)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("audit", help="check the paper's published numbers against each other",
                       description="Write paper_audit.csv and paper_audit.md (no data or torch needed).")
    s.add_argument("--out", type=Path, default=Path("."), help="output folder (default: current)")
    s.set_defaults(func=_cmd_audit)

    s = sub.add_parser("train", help="train one stage or chain from a config file (runs under torchrun)",
                       description="Train one method (a stage such as baseline:efficientnet_b7, or a chain) for one "
                                   "seed/fold from a YAML config (pdstudy.study.jobs). Multi-GPU: torchrun "
                                   "--nproc_per_node N -m pdstudy train --config FILE.")
    s.add_argument("--config", required=True, type=Path, help="train config YAML")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("sweep", help="run an experiment grid through submitit (local or SLURM)",
                       description="Expand a grid (methods x seeds x folds x parameters, pdstudy.study.sweeps) into "
                                   "jobs, submit the unfinished ones, retry failures once and collect the predictions.")
    s.add_argument("--grid", required=True, type=Path, help="grid YAML")
    s.add_argument("--executor", choices=["local", "slurm"], default="local", help="submitit executor (default local)")
    s.add_argument("--out", type=Path, help="run directory of the grid (default reports/<grid name>)")
    s.add_argument("--collect", action="store_true", help="submit nothing: merge the finished jobs' predictions")
    s.add_argument("--dry-run", action="store_true", help="list the jobs that would run, submit nothing")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_sweep)

    s = sub.add_parser("bench", help="measure preprocessing, cache, training-pipeline and quick-run speed",
                       description="Benchmark on a temporary synthetic cohort: prints a table and writes JSON "
                                   "(keys and goals: README, section Benchmark).")
    s.add_argument("--smoke", action="store_true",
                   help="tiny sizes (well under a minute): checks the benchmark runs; the figures are not measurements")
    s.add_argument("--json", type=Path, default=Path("reports/bench.json"),
                   help="results file (default reports/bench.json)")
    s.add_argument("--skip-run", action="store_true",
                   help="leave out quick_run_seconds (the full quick run takes several minutes)")
    s.add_argument("--workdir", type=Path, help="parent of the temporary cohort, caches and run (default: system temp)")
    s.add_argument("--clinical", action="store_true",
                   help="only the clinical-size section: a 512 px, 3-phase whole export, prepare against a naive "
                        "pydicom script, peak memory and scaling (at most 20 minutes); --smoke runs it at tiny size "
                        "with the other sections")
    s.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors in input or configuration print one clear line and exit with 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ManifestError, ValueError, FileNotFoundError) as exc:
        print(f"pdstudy {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pdstudy {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from pdstudy.study.notebooks import RunError  # lazy: torch only on an unexpected error

        if isinstance(exc, RunError):
            print(f"pdstudy {args.verb}: {exc}", file=sys.stderr)
            return 1
        raise
