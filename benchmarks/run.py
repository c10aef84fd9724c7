"""Clips per second of the project's fast paths and of a faithful reference-style pipeline, measured in the same process run.

    python -m benchmarks.run --data-dir data/tau25            # full run on the tau25 preset of the embedded data set
    python -m benchmarks.run --reduced                         # seconds: a tiny generated data set (what CI runs)

Reference path (the original pipeline): every clip decoded from its wav file by a `DataLoader` (num_workers=0, the published
default), torchaudio's `MelSpectrogram`, the eager network in NCHW. Fast path (this project's defaults): the clips held in
memory as fp16, as `load_split_arrays` caches a split (read once before timing; that one-time load is reported separately),
the speed layer's CPU front end (`asc_utils.speed.fast_frontend`), for inference its folded network (`asc_utils.speed.for_inference`), for
training `asc_utils.train.Trainer`. Both paths get the same clips, batch size, threads and
augmentations (DIR, frequency masking, Frequency-MixStyle; Adam, gradient clipping 0.5). Each measurement is repeated,
alternating the two paths, and the best of the repeats is kept, so a machine shared with other work hurts both alike.
Both paths share the process, hence its memory allocator: the benchmark raises glibc's mmap and trim thresholds at start
(`asc_utils.speed.tune_allocator`, as the `asc` command does; ASC_DEFAULT_ALLOCATOR=1 keeps glibc's defaults for both
paths, to measure what the setting is worth).
Writes results.json and results.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from asc_utils import inference
from asc_utils.augment import DIRAugment, FreqMixStyle, generated_dirs
from asc_utils.data import TAUDataset, load_clip, load_split
from asc_utils.features import LogMelFrontend
from asc_utils.models import build_model
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.pretrained import load_published
from asc_utils.speed import allocator_tuned, fast_frontend, for_inference, tune_allocator
from asc_utils.train import TrainConfig, Trainer

FULL = {"infer_clips": 2048, "train_clips": 512, "infer_batch": 256, "train_batch": 64, "files_clips": 1024, "files_batch": 256,
        "repeats": 2}
REDUCED = {"infer_clips": 4, "train_clips": 4, "infer_batch": 4, "train_batch": 2, "files_clips": 4, "files_batch": 2, "repeats": 1}


@dataclass
class Timing:
    """Clips processed, wall-clock and process CPU seconds of one measured run."""

    clips: int
    seconds: float
    cpu_seconds: float

    @property
    def clips_per_s(self) -> float:
        """Throughput in clips per wall-clock second."""
        return self.clips / self.seconds

    @property
    def clips_per_cpu_s(self) -> float:
        """Clips per second of CPU time used by this process (all threads)."""
        return self.clips / max(self.cpu_seconds, 1e-9)


class _Clock:
    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def machine_info(device: torch.device) -> dict:
    """CPU model, core count, torch version and threads, accelerator name, date and load average of this machine."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_1min": _load_average(),
        "allocator": "glibc, thresholds raised (asc_utils.speed.allocator)" if allocator_tuned() else "default",
    }


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _loader(data_dir: Path, split: str, clips: int, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Per-file wav decoding, as in the original pipeline (num_workers=0)."""
    dataset = TAUDataset(data_dir, split)
    if len(dataset) < clips:
        raise SystemExit(f"error: split '{split}' of {data_dir} has {len(dataset)} clips, the benchmark asks for {clips}; "
                         "lower --infer-clips/--train-clips or use a bigger data set (tau25 preset).")
    return DataLoader(Subset(dataset, range(clips)), batch_size=batch_size, shuffle=shuffle, num_workers=0,
                      generator=torch.Generator().manual_seed(seed))


def reference_inference(data_dir: Path, split: str, clips: int, batch_size: int, model: nn.Module,
                        device: torch.device) -> tuple[Timing, torch.Tensor, torch.Tensor]:
    """Wav files -> DataLoader -> torchaudio log-mel -> eager network (NCHW); returns timing, logits and the first batch."""
    frontend = LogMelFrontend().eval().to(device)
    model = model.eval().to(device)
    logits = []
    with torch.no_grad():
        model(frontend(torch.zeros(batch_size, 44_100, device=device)))  # warm-up (kernel selection), not timed
    first = None
    with _Clock() as clock, torch.no_grad():
        for wave, *_ in _loader(data_dir, split, clips, batch_size, shuffle=False):
            first = wave[:, 0] if first is None else first
            logits.append(model(frontend(wave.to(device))).float().cpu())
    return Timing(clips, clock.wall, clock.cpu), torch.cat(logits), first


def fast_inference(waves: np.ndarray, batch_size: int, model: nn.Module, device: torch.device) -> tuple[Timing, torch.Tensor]:
    """Cached fp16 waveforms -> fast log-mel -> folded network; returns timing and logits."""
    frontend = fast_frontend().eval().to(device)
    net = for_inference(model).to(device)
    logits = []
    with torch.inference_mode():
        net(frontend(torch.zeros(batch_size, waves.shape[1], device=device)))  # warm-up (kernel selection), not timed
    with _Clock() as clock, torch.inference_mode():
        resident = torch.from_numpy(waves).to(device)  # the clips in (device) memory, as fp16
        for start in range(0, len(resident), batch_size):
            logits.append(net(frontend(resident[start : start + batch_size].float())).float().cpu())
    return Timing(len(waves), clock.wall, clock.cpu), torch.cat(logits)


def reference_training(data_dir: Path, split: str, clips: int, batch_size: int, model: nn.Module, dirs: list[torch.Tensor],
                       device: torch.device) -> Timing:
    """The original loop: DataLoader over wav files, DIR, torchaudio log-mel + masking, MixStyle, eager NCHW network, Adam."""
    config = TrainConfig(batch_size=batch_size)
    frontend = LogMelFrontend(config.frontend_config()).train().to(device)
    dir_aug = DIRAugment(dirs, p=config.dir_p).to(device)
    mixstyle = FreqMixStyle(p=config.mixstyle_p, alpha=config.mixstyle_alpha)
    model = model.train().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loader = _loader(data_dir, split, clips, batch_size, shuffle=True)

    def step(wave: torch.Tensor, label: torch.Tensor, devices: list[str]) -> None:
        x = dir_aug(wave.to(device), devices)
        logits = model(mixstyle(frontend(x)))
        loss = F.cross_entropy(logits, label.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

    wave, label, devices, *_ = next(iter(loader))
    step(wave, label, list(devices))  # warm-up, not timed
    _sync(device)
    with _Clock() as clock:
        for wave, label, devices, *_ in loader:
            step(wave, label, list(devices))
        _sync(device)
    return Timing(clips, clock.wall, clock.cpu)


def fast_training(waves: np.ndarray, labels: np.ndarray, devices: list[str], batch_size: int, model: nn.Module,
                  dirs: list[torch.Tensor], device: torch.device) -> Timing:
    """The project's training step (asc_utils.train.Trainer) on the cached fp16 waveforms, shuffled like fit() does."""
    config = TrainConfig(batch_size=batch_size, device=device.type)
    trainer = Trainer(model, config, steps_per_epoch=max(1, len(waves) // batch_size), dirs=dirs)
    resident = torch.from_numpy(waves).to(device)
    targets = torch.tensor(np.asarray(labels), dtype=torch.int64)
    order = torch.randperm(len(waves), generator=torch.Generator().manual_seed(0))
    trainer.step(resident[order[:batch_size]], targets[order[:batch_size]], [devices[i] for i in order[:batch_size]])  # warm-up
    _sync(device)
    with _Clock() as clock:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            trainer.step(resident[idx], targets[idx], [devices[i] for i in idx])
        _sync(device)
    return Timing(len(waves), clock.wall, clock.cpu)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(timings: list[Timing]) -> Timing:
    return max(timings, key=lambda t: t.clips_per_s)


def _row(task: str, device: torch.device, ref: list[Timing], fast: list[Timing], **extra: object) -> dict:
    r, f = _best(ref), _best(fast)
    return {"task": task, "device": device.type, "clips": r.clips, "repeats": len(ref),
            "reference_clips_per_s": r.clips_per_s, "fast_clips_per_s": f.clips_per_s, "speedup": f.clips_per_s / r.clips_per_s,
            "reference_clips_per_cpu_s": r.clips_per_cpu_s, "fast_clips_per_cpu_s": f.clips_per_cpu_s,
            "reference_runs": [asdict(t) for t in ref], "fast_runs": [asdict(t) for t in fast], **extra}


@dataclass
class Resident:
    """The first clips of a split held in memory as fp16, as `load_split_arrays` caches a whole split (one-time cost)."""

    waves: np.ndarray
    labels: np.ndarray
    devices: list[str]
    seconds: float


def resident_clips(data_dir: Path, split: str, clips: int, progress: bool) -> Resident:
    """Read the first `clips` clips of a split once into an fp16 array [clips, samples]."""
    table = load_split(data_dir, split).iloc[:clips]
    start = time.perf_counter()
    waves = np.stack([load_clip(data_dir / f) for f in tqdm(table["filename"], desc=f"load {split}", disable=not progress)])
    return Resident(waves.astype(np.float16), table["label"].to_numpy(np.int64), table["device"].tolist(),
                    time.perf_counter() - start)


def files_task(data_dir: Path, device: torch.device, sizes: dict, progress: bool, weights: str | None) -> dict:
    """`predict` from wav files (the DCASE inference API, fp16 weights): decoding then computing batch by batch (reference)
    against decoding the next batch in the background while the current one is computed (fast), plus each part alone."""
    n, batch = sizes["files_clips"], sizes["files_batch"]
    table = load_split(data_dir, "test").iloc[:n]
    if len(table) < n:
        raise SystemExit(f"error: the test split of {data_dir} has {len(table)} clips, the benchmark asks for {n}.")
    paths, ids = [data_dir / f for f in table["filename"]], table["device"].tolist()
    model = inference.load_model(weights) if weights else MultiDeviceModel(build_model("sntl_task1_2")).half().eval()
    use_cuda = device.type == "cuda"
    ref, fast, decode, compute = [], [], [], []
    for _ in tqdm(range(sizes["repeats"]), desc=f"files ({device.type})", disable=not progress):
        with _Clock() as clock:
            plain = inference.predict_files(model, paths, ids, use_cuda, batch, progress=False, prefetch=False)
        ref.append(Timing(n, clock.wall, clock.cpu))
        with _Clock() as clock:
            overlapped = inference.predict_files(model, paths, ids, use_cuda, batch, progress=False, prefetch=True)
        fast.append(Timing(n, clock.wall, clock.cpu))
        with _Clock() as clock:
            waves = torch.stack(inference.load_inputs(paths, ids, model))
        decode.append(Timing(n, clock.wall, clock.cpu))
        with _Clock() as clock:
            inference.predict_waveforms(model, waves, ids, use_cuda, batch)
        compute.append(Timing(n, clock.wall, clock.cpu))
    if not torch.equal(plain, overlapped):
        raise SystemExit("error: predict_files gave different logits with and without prefetching.")
    best = lambda timings: max(t.clips_per_s for t in timings)  # noqa: E731
    return _row("files", device, ref, fast, batch_size=batch, load_seconds=0.0, decode_files_per_s=best(decode),
                compute_clips_per_s=best(compute))


def run_device(data_dir: Path, device: torch.device, sizes: dict, tasks: list[str], progress: bool,
               weights: str | None = None) -> list[dict]:
    """Every requested task on one device: the reference and the fast path alternately, `repeats` times each."""
    rows = []
    dirs = generated_dirs()
    if "inference" in tasks:
        n, batch = sizes["infer_clips"], sizes["infer_batch"]
        data = resident_clips(data_dir, "test", n, progress)
        ref, fast, agree = [], [], {}
        for _ in tqdm(range(sizes["repeats"]), desc=f"inference ({device.type})", disable=not progress):
            torch.manual_seed(0)
            model = load_published("task1_2", path=weights, progress=False) if weights else build_model("sntl_task1_2")
            timing, ref_logits, first = reference_inference(data_dir, "test", n, batch, model, device)
            ref.append(timing)
            timing, fast_logits = fast_inference(data.waves, batch, model, device)
            fast.append(timing)
            with torch.inference_mode():  # the fast path on the reference's own fp32 waveforms: the computation alone
                same_input = for_inference(model)(fast_frontend().eval().to(device)(first.to(device))).float().cpu()
            agree = {"same_prediction": float((ref_logits.argmax(1) == fast_logits.argmax(1)).float().mean()),
                     "max_abs_logit_diff": float((ref_logits - fast_logits).abs().max()),
                     "max_abs_logit_diff_same_input": float((ref_logits[: len(first)] - same_input).abs().max())}
        rows.append(_row("inference", device, ref, fast, batch_size=batch, load_seconds=data.seconds, **agree))
    if "files" in tasks:
        rows.append(files_task(data_dir, device, sizes, progress, weights))
    if "training" in tasks:
        n, batch = sizes["train_clips"], sizes["train_batch"]
        data = resident_clips(data_dir, "split25", n, progress)
        ref, fast = [], []
        for _ in tqdm(range(sizes["repeats"]), desc=f"training ({device.type})", disable=not progress):
            torch.manual_seed(0)
            ref.append(reference_training(data_dir, "split25", n, batch, build_model("sntl_task1_2"), dirs, device))
            torch.manual_seed(0)
            fast.append(fast_training(data.waves, data.labels, data.devices, batch, build_model("sntl_task1_2"), dirs, device))
        rows.append(_row("training", device, ref, fast, batch_size=batch, load_seconds=data.seconds))
    return rows


def markdown(results: dict) -> str:
    """The results as a Markdown section: machine line, then one table row per task and device."""
    m = results["machine"]
    lines = [
        f"### {m['date']} — {m['cpu']} ({m['cores']} cores), torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}",
        "",
        f"Data: `{results['data']}` ({results['mode']} mode); inference weights: {results['inference_weights']}. "
        f"Load average at start {m['load_average_1min']:.1f}, at end {results['load_average_end']:.1f} "
        "(above the core count means other processes shared the machine). "
        f"Memory allocator (both paths, one process): {m.get('allocator', 'default')}.",
        "",
        "| task | device | clips | batch | reference clips/s | fast clips/s | speed-up | reference clips/CPU-s | fast clips/CPU-s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(f"| {r['task']} | {r['device']} | {r['clips']} | {r['batch_size']} | {r['reference_clips_per_s']:.1f} | "
                     f"{r['fast_clips_per_s']:.1f} | {r['speedup']:.2f}x | {r['reference_clips_per_cpu_s']:.1f} | "
                     f"{r['fast_clips_per_cpu_s']:.1f} |")
    for r in results["rows"]:
        if r["task"] == "files":
            lines.append(f"\nFiles on {r['device']}: `predict_files` on {r['clips']} wav files, fp16 weights; reference = decode "
                         f"then compute per batch, fast = the next batch decoded in the background (`asc_utils.speed.prefetch`). "
                         f"Alone: decoding {r['decode_files_per_s']:.0f} files/s, computing {r['compute_clips_per_s']:.0f} clips/s.")
            continue
        lines.append(f"\n{r['task']} on {r['device']}: one-time load of the {r['clips']} clips into memory (fp16) "
                     f"{r['load_seconds']:.1f} s, not in the fast path's time.")
        if "same_prediction" in r:
            lines.append(f"\nInference on {r['device']}: same predicted class for {100 * r['same_prediction']:.1f} % of the clips; "
                         f"max |logit difference| {r['max_abs_logit_diff']:.2e} (the fast path reads the clips stored as fp16), "
                         f"{r['max_abs_logit_diff_same_input']:.2e} on the same fp32 waveforms (first batch).")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options (see --help)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="TAU22-layout data set (full run: `asc data synth --preset tau25 --out DIR`)")
    p.add_argument("--reduced", action="store_true", help="tiny sizes on a generated 'tiny' data set (seconds; for CI)")
    p.add_argument("--out", default="outputs/benchmarks", help="folder for results.json and results.md (default: %(default)s)")
    p.add_argument("--tasks", nargs="+", default=["inference", "files", "training"], choices=["inference", "files", "training"])
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"], help="all = CPU, plus CUDA when available")
    p.add_argument("--weights", default=None, help="published SNTL task1_2 state dict for the inference model (default: "
                   "a freshly initialised network; the weights change the prediction check, not the speed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    for key in FULL:
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"(full: {FULL[key]}, reduced: {REDUCED[key]})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write results.json and results.md; returns the results."""
    args = parse_args(argv)
    tune_allocator()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in (REDUCED if args.reduced else FULL).items()}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else None
        if data_dir is None and args.reduced:
            from asc_utils.synth import synthesize

            data_dir = synthesize(Path(tmp) / "tiny", preset="tiny", progress=False)
        if data_dir is None or not (data_dir / "meta.csv").exists():
            raise SystemExit(f"error: no data set at {data_dir}. Generate the benchmark data once with "
                             "`asc data synth --preset tau25 --out data/tau25` and pass --data-dir data/tau25 (or use --reduced).")
        devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
        if args.device in ("all", "cuda") and torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            raise SystemExit("error: --device cuda but torch sees no CUDA GPU.")
        results = {"mode": "reduced" if args.reduced else "full", "data": str(args.data_dir or "generated tiny preset"),
                   "inference_weights": args.weights or "freshly initialised",
                   "sizes": sizes, "machine": machine_info(devices[-1]), "rows": []}
        for device in devices:
            results["rows"] += run_device(data_dir, device, sizes, args.tasks, progress=not args.quiet, weights=args.weights)
    results["load_average_end"] = _load_average()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (out / "results.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
