"""The reference file of longer runs on the embedded data set: docs/results.json and docs/results.md.

    python -m benchmarks.results                       # 3 seeds x (recipe, --no-dir --no-mixstyle), 20 epochs, batch 16
    python -m benchmarks.results --write-only          # rebuild the two files from the runs already finished

Each run is exactly `asc train base --data-dir D --out R --epochs 20 --batch-size 16 --seed S [--no-dir --no-mixstyle]`
followed by `asc eval --run R`, called through the Python API (`train_base`, `evaluate_run`) with the same defaults as the
`asc` command (speed layer on, glibc allocator tuned). Runs live in runs/results/<variant>/seed<S>/ and are resumable: a
finished run (metrics.json present) is read back, an interrupted one continues from its checkpoint. After every finished
run both files are rewritten from the finished runs only, so they never hold a number that was not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asc_utils import runs
from asc_utils.evaluate import evaluate_run
from asc_utils.labels import DEVICE_GROUPS, DEVICES
from asc_utils.recipe import TrainConfig
from asc_utils.speed import tune_allocator
from asc_utils.train import train_base

REPO = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {  # name -> TrainConfig overrides and the matching `asc train base` flags
    "recipe": {"overrides": {}, "flags": ""},
    "no_dir_no_mixstyle": {"overrides": {"dir_p": 0.0, "mixstyle_p": 0.0}, "flags": " --no-dir --no-mixstyle"},
}
COLUMNS: tuple[str, ...] = (*DEVICES, *DEVICE_GROUPS, "overall", "macro", "a_minus_unseen")


def cpu_model() -> str:
    """The CPU model name as /proc/cpuinfo reports it (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def is_virtual_machine() -> bool:
    """True when /proc/cpuinfo lists the 'hypervisor' flag (Linux under a hypervisor)."""
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def git_commit() -> str | None:
    """The repository's HEAD commit (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None


def run_row(metrics: dict, precision: str = "fp32") -> dict[str, float]:
    """One run's accuracies in % (per device, group, overall, macro, and device a minus the unseen group)."""
    m = metrics[precision]
    row = {d: 100 * m["per_device"][d] for d in DEVICES}
    row |= {g: 100 * m["per_group"][g] for g in DEVICE_GROUPS}
    row |= {"overall": 100 * m["overall"], "macro": 100 * m["macro"]}
    row["a_minus_unseen"] = row["a"] - row["unseen"]
    return row


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """Mean, sample standard deviation (None for one run), min and max per column."""
    out = {}
    for key in COLUMNS:
        values = np.array([r[key] for r in rows])
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                    "min": float(values.min()), "max": float(values.max())}
    return out


def commands(data_dir: str, run_dir: str, epochs: int, batch_size: int, seed: int, flags: str) -> list[str]:
    """The two `asc` commands equivalent to one run."""
    return [f"asc train base --data-dir {data_dir} --out {run_dir} --epochs {epochs} --batch-size {batch_size} "
            f"--seed {seed}{flags}", f"asc eval --run {run_dir}"]


def one_run(data_dir: Path, run_dir: Path, config: TrainConfig, progress: bool) -> dict:
    """Train (or resume) and evaluate one run unless its metrics.json exists; returns metrics.json and the timings."""
    timing_path = run_dir / "results_timing.json"
    if (run_dir / runs.METRICS).exists() and (run_dir / runs.MODEL).exists():
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        return {"metrics": runs.read_metrics(run_dir), **timing}
    start = time.perf_counter()
    resume = (run_dir / runs.CHECKPOINT).exists()
    train_base(data_dir, run_dir, config, resume=resume, progress=progress)
    trained = time.perf_counter()
    evaluate_run(run_dir, data_dir, progress=progress)
    timing = {"train_seconds": round(trained - start, 1), "eval_seconds": round(time.perf_counter() - trained, 1),
              "resumed": resume, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    runs.write_json(timing_path, timing)
    return {"metrics": runs.read_metrics(run_dir), **timing}


def fmt(stat: dict[str, float | None]) -> str:
    """'mean +- std' (or the single value) with one decimal."""
    return f"{stat['mean']:.1f}" if stat["std"] is None else f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def markdown(results: dict) -> str:
    """docs/results.md from the results dict."""
    p = results["provenance"]
    lines = [
        "# Longer runs on the embedded data set (reference file)",
        "",
        "Written by `python -m benchmarks.results` from the runs it lists; the machine-readable copy is `docs/results.json`",
        "(notebook 05 reads it, the README quotes it). These are **not TAU22 results**: the embedded data set is generated audio",
        f"with the TAU22 layout ({p['data_set']}).",
        "",
        f"- Runs: {p['epochs']} epochs, batch {p['batch_size']}, stage-1 recipe otherwise; variants "
        + ", ".join(f"`{v}`" for v in results["variants"]) + f"; seeds {', '.join(map(str, p['seeds']))}.",
        f"- Evaluation: whole test split ({p['test_clips'] or 0:,} clips), {p['precision']}, accuracy in %.",
        f"- Date (UTC): {p['started']} to {p['updated']}.",
        f"- Machine: {p['machine']['cpu']}{' (virtual machine)' if p['machine'].get('virtual_machine') else ''}, "
        f"{p['machine']['cores']} cores, {p['threads']} torch threads, "
        f"torch {p['machine']['torch']}, Python {p['machine']['python']}, {p['machine']['device']}; "
        f"speed layer {'on' if p['speed_layer'] else 'off'}; DIR responses: {str(p['dir_source']).split('. ')[0]}.",
        f"- Code: the working tree at commit `{p['commit']}` when the runs started; produced by `{p['command']}`.",
        f"- Status: {results['status']}.",
        "",
        "## Mean ± standard deviation over seeds (sample std, ddof = 1)",
        "",
        "| variant | runs | " + " | ".join(COLUMNS).replace("a_minus_unseen", "a - unseen") + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for name, block in results["variants"].items():
        if block["summary"]:
            lines.append(f"| `{name}` | {len(block['runs'])} | " + " | ".join(fmt(block["summary"][c]) for c in COLUMNS) + " |")
    lines += ["", "## Every run", "", "| variant | seed | " + " | ".join(COLUMNS).replace("a_minus_unseen", "a - unseen")
              + " | train s |", "|---|---:|" + "---:|" * (len(COLUMNS) + 1)]
    for name, block in results["variants"].items():
        for run in block["runs"]:
            secs = run.get("train_seconds")
            lines.append(f"| `{name}` | {run['seed']} | " + " | ".join(f"{run['accuracy'][c]:.1f}" for c in COLUMNS)
                         + f" | {'' if secs is None else f'{secs:.0f}'} |")
    lines += ["", "## Commands of each run", ""]
    for name, block in results["variants"].items():
        for run in block["runs"]:
            lines.append(f"- `{name}`, seed {run['seed']}: `" + "` then `".join(run["commands"]) + "`")
    lines += ["", "Groups: real = a, b, c; seen = s1-s3 (simulated, in training); unseen = s4-s6 (simulated, not in training).",
              "`a - unseen` is device a's accuracy minus the unseen group's, the device-mismatch gap. `train s` is the",
              "wall-clock time of the training, waiting for the CPU included when other work shared the machine: it is not a",
              "speed measurement (benchmarks/RESULTS.md has those).", ""]
    return "\n".join(lines)


def write_files(results: dict, docs: Path) -> None:
    """Write results.json and results.md atomically."""
    runs.write_json(docs / "results.json", results)
    runs.atomic_write(docs / "results.md", lambda path: path.write_text(markdown(results), encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) every missing run and rewrite the reference files after each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data/tutorial", help="data set folder (default: %(default)s)")
    parser.add_argument("--out", default="runs/results", help="folder of the run folders (default: %(default)s)")
    parser.add_argument("--docs", default="docs", help="where results.json/.md go (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--write-only", action="store_true", help="train nothing: rebuild the files from finished runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # as the `asc` command does
    data_dir, out, docs = Path(args.data_dir), Path(args.out), Path(args.docs)
    if not (data_dir / "meta.csv").exists():
        print(f"error: no data set at {data_dir} (expected meta.csv, audio/ and split_setup/). Generate the embedded one with "
              f"`asc data synth --preset tutorial --out {data_dir}` or pass --data-dir.", file=sys.stderr)
        return 2
    card = json.loads((data_dir / "data_card.json").read_text()) if (data_dir / "data_card.json").exists() else {}
    previous = json.loads((docs / "results.json").read_text()) if (docs / "results.json").exists() else {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data_set = (f"`{card['preset']['name']}` preset, generator {card['generator_version']}, seed {card['seed']}"
                if card else str(data_dir))
    results: dict[str, Any] = {
        "provenance": {
            "command": "python -m benchmarks.results " + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": previous.get("provenance", {}).get("started", now), "updated": now, "commit": git_commit(),
            "data_dir": str(data_dir), "data_set": data_set,
            "data_card": {k: card.get(k) for k in ("generator_version", "seed")} | {"preset": card.get("preset", {}).get("name")},
            "epochs": args.epochs, "batch_size": args.batch_size,
            "seeds": args.seeds, "threads": args.threads, "precision": "fp32", "speed_layer": True, "test_clips": None,
            "dir_source": None,
            "machine": {"cpu": cpu_model(), "virtual_machine": is_virtual_machine(), "cores": os.cpu_count(),
                        "torch": torch.__version__,
                        "python": platform.python_version(), "device": "CPU only"},
        },
        "status": "",
        "variants": {name: {"flags": v["flags"].strip(), "overrides": v["overrides"], "runs": [], "summary": None}
                     for name, v in VARIANTS.items()},
    }
    if args.write_only and previous:  # the files keep the provenance of the runs, not of this rewrite
        for key in ("command", "updated", "commit", "threads"):
            results["provenance"][key] = previous["provenance"][key]
        results["provenance"]["machine"] |= previous["provenance"]["machine"]  # the same machine: keep what was recorded
    planned = [(name, seed) for seed in args.seeds for name in VARIANTS]  # alternate variants: partial results stay paired
    for name, seed in planned:
        run_dir = out / name / f"seed{seed}"
        if args.write_only and not (run_dir / runs.METRICS).exists():
            continue
        config = replace(TrainConfig(), epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                         **VARIANTS[name]["overrides"])
        done = one_run(data_dir, run_dir, config, progress=not args.quiet)
        info = runs.read_config(run_dir)
        results["provenance"]["test_clips"] = done["metrics"]["info"]["clips"]
        results["provenance"]["dir_source"] = results["provenance"]["dir_source"] or info.get("dir_source")
        block = results["variants"][name]
        block["runs"].append({"seed": seed, "run_dir": str(run_dir),
                              "commands": commands(str(data_dir), str(run_dir), args.epochs, args.batch_size, seed,
                                                   VARIANTS[name]["flags"]),
                              "accuracy": run_row(done["metrics"]), "train_seconds": done.get("train_seconds"),
                              "finished": done.get("finished")})
        block["summary"] = summarise([r["accuracy"] for r in block["runs"]])
        finished = sum(len(b["runs"]) for b in results["variants"].values())
        results["status"] = (f"complete: {finished} of {len(planned)} runs" if finished == len(planned)
                             else f"partial: {finished} of {len(planned)} runs had finished when this file was written")
        if not args.write_only:
            results["provenance"]["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_files(results, docs)
        print(f"{name} seed {seed}: macro {done['metrics']['fp32']['macro'] * 100:.1f} %", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
