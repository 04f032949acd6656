"""`nbkit` on the command line: the same config as `%%finetune` and `nbkit.finetune`, headless.

    nbkit finetune CONFIG.yaml [--set key=value ...] [--run-dir DIR] [--dry-run]
    nbkit report RUN_DIR
    nbkit merge RUN_DIR OUT [--prompt TEXT ...] [--overwrite] [--no-check]
    nbkit export RUN_DIR OUT  (the LoRA adapter only; same options)
"""

from __future__ import annotations

import argparse
import sys


def _parse_sets(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"nbkit: --set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value else None
    return out


def _finetune(args) -> int:
    import yaml

    from nbkit.core.config import ConfigError, read_config
    from nbkit.core.train.finetune import finetune, resolve_config

    try:
        config = read_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"nbkit: {exc}") from None
    config.update(_parse_sets(args.set))
    if args.run_dir:
        config["run_dir"] = args.run_dir
    try:
        cfg = resolve_config(config)
        if args.dry_run:
            print(yaml.safe_dump(cfg.__dict__, sort_keys=False), end="")
            return 0
        run = finetune(config=config, progress=not args.no_progress)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"nbkit: {exc}") from None
    from nbkit.figures.report import write_report

    report = write_report(run)
    metrics = run.metrics
    print(f"status: {run.status}")
    for key in sorted(metrics):
        print(f"{key}: {metrics[key]:.4f}")
    print(f"run directory: {run.run_dir}")
    print(f"report: {report}")
    return 0 if run.status == "finished" else 1


def _report(args) -> int:
    from nbkit.core.train.run import Run
    from nbkit.figures.report import write_report

    print(write_report(Run.load(args.run_dir)))
    return 0


def _runs(args) -> int:
    from nbkit.core.runs import list_runs, sizes_for_display

    table = list_runs(args.root)
    if table.empty:
        print(f"No runs in {args.root!r}.")
        return 0
    print(sizes_for_display(table).to_string(index=False))
    return 0


def _clean(args) -> int:
    from nbkit.core.models import human_bytes
    from nbkit.core.runs import clean_runs, sizes_for_display

    try:
        old = clean_runs(args.root, keep=args.keep, dry_run=not args.yes)
    except ValueError as exc:
        print(f"nbkit clean: {exc}", file=sys.stderr)
        return 2
    if old.empty:
        print(f"Nothing to clean in {args.root!r}.")
        return 0
    total = human_bytes(int(old["size"].sum()))
    verb = "Removed" if args.yes else "Would remove (add --yes to delete)"
    print(f"{verb}: {len(old)} runs, {total}")
    print(sizes_for_display(old.drop(columns="removed")).to_string(index=False))
    return 0


def _export(args) -> int:
    from nbkit.core.train.run import Run

    try:
        run = Run.load(args.run_dir)
        save = run.merge if args.command == "merge" else run.save_adapter
        check = save(args.out, check=not args.no_check, prompts=args.prompt or None, overwrite=args.overwrite,
                     max_new_tokens=args.max_new_tokens)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"nbkit {args.command}: {exc}", file=sys.stderr)
        return 2
    print(check.to_text())
    return 0 if check.ok or args.no_check else 1


def main(argv: list[str] | None = None) -> int:
    from nbkit.core.config import config_help

    parser = argparse.ArgumentParser(prog="nbkit", description="nbkit: fine-tune and inspect models.")
    sub = parser.add_subparsers(dest="command", required=True)
    ft = sub.add_parser("finetune", help="fine-tune from a YAML config",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="config keys:\n" + config_help())
    ft.add_argument("config", help="YAML file with config keys (see below)")
    ft.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    ft.add_argument("--run-dir", help="write the run here (default ./nbkit-runs/<name>-<time>)")
    ft.add_argument("--dry-run", action="store_true", help="validate and print the resolved config")
    ft.add_argument("--no-progress", action="store_true", help="no progress bar")
    ft.set_defaults(func=_finetune)
    rp = sub.add_parser("report", help="write report.html for a run directory")
    rp.add_argument("run_dir")
    rp.set_defaults(func=_report)
    rn = sub.add_parser("runs", help="list run directories with status, best metric and size")
    rn.add_argument("root", nargs="?", default="nbkit-runs")
    rn.set_defaults(func=_runs)
    cl = sub.add_parser("clean", help="remove all but the newest runs (lists them unless --yes)")
    cl.add_argument("root", nargs="?", default="nbkit-runs")
    cl.add_argument("--keep", type=int, default=3, help="how many of the newest runs to keep (default 3)")
    cl.add_argument("--yes", action="store_true", help="really delete")
    cl.set_defaults(func=_clean)
    for name, what in (("merge", "write the run's model with its LoRA adapter merged (a from_pretrained folder)"),
                       ("export", "write the run's LoRA adapter (what peft.PeftModel.from_pretrained loads)")):
        ex = sub.add_parser(name, help=f"{what}, reload it and check its answers")
        ex.add_argument("run_dir")
        ex.add_argument("out", help="the folder to write (refused if it holds something other than an export)")
        ex.add_argument("--prompt", action="append", default=[], help="a prompt to check on (repeatable; "
                        "default: the run's samples)")
        ex.add_argument("--max-new-tokens", type=int, default=None)
        ex.add_argument("--overwrite", action="store_true", help="replace a non-empty folder")
        ex.add_argument("--no-check", action="store_true", help="write only, do not reload and compare")
        ex.set_defaults(func=_export)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
