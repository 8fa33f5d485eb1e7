"""
Run the demo (`training/pretrain.py --preset demo`) for several seeds and variants, and tabulate its numbers as a
user will see them: the mean, standard deviation and range of each headline number over the seeds, and which of
the paper's claims held in every seed.

Every run trains on the same synthetic data (built once, with `--data_seed`, which is what a user's first demo builds
with the default seed 42), so the spread is that of training: the seed of the initial weights, the batch order and the
evaluation's support sets. Each run writes its own folder `OUTPUT_DIR/{variant}-seed{seed}` (model, `results.json`,
`train.log`); a run whose `results.json` is already there is not run again, so an interrupted sweep continues where
it stopped. The table goes to `OUTPUT_DIR/demo_seeds.md`, the numbers behind it to `OUTPUT_DIR/demo_seeds.json`.

Usage (from the repository root; arguments the script does not know are passed to every pretraining run):

    python benchmarks/demo_seeds.py                                           # seeds 0-4, BD and NM
    python benchmarks/demo_seeds.py --seeds 0 1 2 --variants bd --learning_rate 5e-4
    python benchmarks/demo_seeds.py --aggregate_only true                     # re-tabulate the runs already there
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from medbind_training.retrieval import RECALL_KS

PRETRAIN = Path(__file__).resolve().parents[1] / "training" / "pretrain.py"
RESULTS = "results.json"
# The retrieval directions of the demo's test split, as results.json names them (dataset / direction).
RETRIEVAL_DIRECTIONS = {
    "cxr/cxr_to_text": "CXR -> report",
    "ecg/ecg_to_text": "ECG -> report",
    "pairs/cxr_to_ecg": "CXR -> ECG (same visit)",
    "pairs/ecg_to_cxr": "ECG -> CXR (same visit)",
}
ZERO_SHOT = {"cxr": "zero-shot CXR", "ecg": "zero-shot ECG"}
FEW_SHOT = {"cxr": "few-shot CXR", "ecg": "few-shot ECG"}
CROSS_MODALITY = {
    "hypertrophy_from_cxr": "cross-modality: ECG hypertrophy from a CXR",
    "cardiomegaly_from_ecg": "cross-modality: CXR cardiomegaly from an ECG",
}
BINDING_DIRECTIONS = ("pairs/cxr_to_ecg", "pairs/ecg_to_cxr")  # what EMCL adds and TMCL alone cannot learn


@dataclass
class DemoSeedsArguments:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4], metadata={"help": "training seeds"})
    variants: list[str] = field(
        default_factory=lambda: ["bd", "nm"], metadata={"help": "any of bd, nm, ecg-clip, cxr-clip"}
    )
    output_dir: str = field(default="outputs/demo-seeds", metadata={"help": "one folder per run, and the tables"})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "the demo data shared by every run (default: OUTPUT_DIR/data, built if absent)"}
    )
    data_seed: int = field(default=42, metadata={"help": "seed of the data build (42: what the README command builds)"})
    demo_num_patients: int = field(default=2000, metadata={"help": "patients in the data build (the demo's 2000)"})
    parallel: int = field(
        default=os.cpu_count() or 1, metadata={"help": "runs at a time (default: one per core)"}
    )
    threads: int = field(
        default=1,
        metadata={
            "help": "OMP_NUM_THREADS of each run (default 1, as `accelerate launch` runs README's demo command: "
            "another thread count rounds differently, and gives other numbers)"
        },
    )
    aggregate_only: bool = field(default=False, metadata={"help": "tabulate the results.json already there, run none"})


# ---- aggregation: pure functions of results.json contents ------------------------------------------------------


def headline_numbers(results: Mapping[str, float]) -> dict[str, float]:
    """The demo's headline numbers (percent) from one `results.json`: recall@1/5/10 of each retrieval direction,
    zero-shot and few-shot balanced accuracy per modality, and each cross-modality task's balanced accuracy. A number
    the run did not produce (e.g. CXR for ECG-CLIP) is left out."""
    return _numbers(results, chance=False)


def chance_numbers(results: Mapping[str, float]) -> dict[str, float]:
    """Chance level of each headline number, as `results.json`'s `.../chance` siblings give it."""
    return _numbers(results, chance=True)


def _numbers(results: Mapping[str, float], chance: bool) -> dict[str, float]:
    suffix = "/chance" if chance else ""
    keys = {}
    for direction, name in RETRIEVAL_DIRECTIONS.items():
        for k in RECALL_KS:
            keys[f"{name} R@{k}"] = f"retrieval/{direction}/{'chance' if chance else 'recall'}@{k}"
    for modality, name in ZERO_SHOT.items():
        keys[name] = f"zero_shot/{modality}/balanced_accuracy{suffix}"
    few_shot_ks = sorted({int(key.split("/")[2][1:]) for key in results if key.startswith("few_shot/")})
    for modality, name in FEW_SHOT.items():
        for k in few_shot_ks:
            keys[f"{name} K={k}"] = f"few_shot/{modality}/k{k}/{'chance' if chance else 'balanced_accuracy'}"
    for task, name in CROSS_MODALITY.items():
        keys[name] = f"cross_modality/{task}/balanced_accuracy{suffix}"
    return {name: float(results[key]) for name, key in keys.items() if key in results}


def summarize(values: Sequence[float]) -> dict[str, float]:
    """`{"mean", "sd", "min", "max", "range"}` of one number over seeds (sd: the sample standard deviation, 0 for one
    value; range: max - min, the spread the demo's stability goal bounds)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "range": max(values) - min(values),
    }


@dataclass(frozen=True)
class Claim:
    """A statement the demo should show in every seed, checked on one seed's `{variant: headline numbers}`."""

    description: str
    variants: tuple[str, ...]
    check: Callable[[Mapping[str, Mapping[str, float]], Mapping[str, float]], bool]


def _above(variant: str, name: str, margin: float = 0.0):
    return lambda runs, chance: runs[variant][name] > chance[name] + margin


def _beats(name: str, margin: float = 0.0):
    return lambda runs, chance: runs["bd"][name] > runs["nm"][name] + margin


def demo_claims(margin: float = 0.0) -> list[Claim]:
    """
    The claims the demo makes (paper Tables 2-3, as the demo's README states them), each by `margin` points:
    MEDBind_BD finds the same visit's ECG / CXR above chance and above MEDBind_NM (R@5 and R@10), beats NM on both
    cross-modality tasks and is above chance on them; each variant retrieves reports above chance, and is above
    chance on zero-shot.
    """
    claims = []
    for direction in BINDING_DIRECTIONS:
        for k in (5, 10):
            name = f"{RETRIEVAL_DIRECTIONS[direction]} R@{k}"
            claims.append(Claim(f"BD > NM on {name}", ("bd", "nm"), _beats(name, margin)))
            claims.append(Claim(f"BD above chance on {name}", ("bd",), _above("bd", name, margin)))
    for name in CROSS_MODALITY.values():
        claims.append(Claim(f"BD > NM on {name}", ("bd", "nm"), _beats(name, margin)))
        claims.append(Claim(f"BD above chance on {name}", ("bd",), _above("bd", name, margin)))
    for variant in ("bd", "nm"):
        for direction in ("cxr/cxr_to_text", "ecg/ecg_to_text"):
            name = f"{RETRIEVAL_DIRECTIONS[direction]} R@5"
            claims.append(Claim(f"{variant.upper()} above chance on {name}", (variant,), _above(variant, name, margin)))
        for name in ZERO_SHOT.values():
            claims.append(Claim(f"{variant.upper()} above chance on {name}", (variant,), _above(variant, name, margin)))
    return claims


def check_claims(
    runs: Mapping[str, Mapping[int, Mapping[str, float]]], chance: Mapping[str, float], margin: float = 0.0
) -> list[dict]:
    """Each claim of `demo_claims(margin)` whose variants were run on every seed that has them all, as
    `{"claim", "held_in", "seeds", "held_in_every_seed"}`; `runs` is `{variant: {seed: headline numbers}}`."""
    checked = []
    for claim in demo_claims(margin):
        if not all(variant in runs for variant in claim.variants):
            continue
        seeds = sorted(set.intersection(*(set(runs[variant]) for variant in claim.variants)))
        held = [
            seed for seed in seeds if claim.check({variant: runs[variant][seed] for variant in claim.variants}, chance)
        ]
        every = bool(seeds) and held == seeds
        checked.append({"claim": claim.description, "held_in": held, "seeds": seeds, "held_in_every_seed": every})
    return checked


def aggregate(runs: Mapping[str, Mapping[int, Mapping[str, float]]], chance: Mapping[str, float]) -> dict:
    """`{"seeds", "summary": {variant: {number: summarize(...)}}, "chance", "claims"}` over `runs` (as in
    `check_claims`)."""
    summary = {}
    for variant, by_seed in runs.items():
        names = list(dict.fromkeys(name for numbers in by_seed.values() for name in numbers))
        summary[variant] = {
            name: summarize([numbers[name] for numbers in by_seed.values() if name in numbers]) for name in names
        }
    return {
        "seeds": {variant: sorted(by_seed) for variant, by_seed in runs.items()},
        "summary": summary,
        "chance": dict(chance),
        "claims": check_claims(runs, chance),
    }


def markdown_table(aggregated: Mapping) -> str:
    """The aggregate as Markdown: one row per headline number, per variant `mean ± sd (min-max)` and the range, then
    the claims and the seeds each held in."""
    variants = list(aggregated["summary"])
    names = list(dict.fromkeys(name for variant in variants for name in aggregated["summary"][variant]))
    header = ["number (test split, percent)"]
    for variant in variants:
        header += [f"MEDBind_{variant.upper()} mean ± sd (min-max)", "range"]
    header.append("chance")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        row = [name]
        for variant in variants:
            stats = aggregated["summary"][variant].get(name)
            if stats:
                row += [f"{stats['mean']:.1f} ± {stats['sd']:.1f} ({stats['min']:.1f}-{stats['max']:.1f})"]
                row.append(f"{stats['range']:.1f}")
            else:
                row += ["-", "-"]
        chance = aggregated["chance"].get(name)
        row.append(f"{chance:.1f}" if chance is not None and not math.isnan(chance) else "-")
        lines.append("| " + " | ".join(row) + " |")
    seeds = ", ".join(f"{variant.upper()}: {', '.join(map(str, s))}" for variant, s in aggregated["seeds"].items())
    lines += ["", f"Seeds: {seeds}.", ""]
    for claim in aggregated["claims"]:
        held, seeds_checked = claim["held_in"], claim["seeds"]
        mark = f"held in {len(held)} of {len(seeds_checked)} seeds"
        if claim["held_in_every_seed"]:
            mark = "held in every seed"
        lines.append(f"- {claim['claim']}: {mark}")
    return "\n".join(lines) + "\n"


def read_runs(output_dir: Path, variants: Sequence[str], seeds: Sequence[int]) -> tuple[dict, dict[str, float]]:
    """`({variant: {seed: headline numbers}}, chance)` from the `results.json` of every finished run in `output_dir`
    (a run without one is left out, with a note on stderr)."""
    runs: dict[str, dict[int, dict[str, float]]] = {}
    chance: dict[str, float] = {}
    for variant in variants:
        for seed in seeds:
            path = run_dir(output_dir, variant, seed) / RESULTS
            if not path.is_file():
                print(f"no {path}: {variant} seed {seed} left out", file=sys.stderr)
                continue
            try:
                results = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not a JSON results file ({error})") from error
            runs.setdefault(variant, {})[seed] = headline_numbers(results)
            chance = chance_numbers(results) | chance
    return runs, chance


# ---- running --------------------------------------------------------------------------------------------------


def run_dir(output_dir: Path, variant: str, seed: int) -> Path:
    return output_dir / f"{variant}-seed{seed}"


def build_data(dataset_dir: Path, num_patients: int, seed: int) -> float:
    """Build the demo data once for every run (seconds it took; 0 if it was there)."""
    from medbind_processing.demo import DEMO_DATASETS, save_demo

    if all((dataset_dir / name).is_dir() for name in DEMO_DATASETS):
        return 0.0
    start = time.perf_counter()
    save_demo(dataset_dir, num_patients=num_patients, seed=seed)
    return time.perf_counter() - start


def run_demo(
    output_dir: Path, dataset: tuple[Path, int], variant: str, seed: int, extra: Sequence[str], threads: int
) -> dict[str, float | int | str]:
    """One demo run in its own process and folder, on `dataset` (its folder and patient count);
    `{"variant", "seed", "wall_s", "returncode"}` (wall_s of a run found already finished: its recorded one)."""
    folder = run_dir(output_dir, variant, seed)
    timing = folder / "demo_seeds_run.json"
    if (folder / RESULTS).is_file() and timing.is_file():
        return json.loads(timing.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, str(PRETRAIN), "--preset", "demo", "--variant", variant, "--seed", str(seed),
        "--dataset_dir", str(dataset[0]), "--demo_num_patients", str(dataset[1]), "--output_dir", str(folder), *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with open(folder / "train.log", "w") as log:
        returncode = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall_s = round(time.perf_counter() - start, 1)
    record = {"variant": variant, "seed": seed, "wall_s": wall_s, "returncode": returncode}
    if returncode == 0:
        timing.write_text(json.dumps(record))
    else:
        print(f"{variant} seed {seed} failed ({returncode}): see {folder / 'train.log'}", file=sys.stderr)
    return record


def main(argv: list[str] | None = None) -> dict:
    """Run the sweep (unless `--aggregate_only`), then write and print the table; returns the aggregate."""
    parser = HfArgumentParser(DemoSeedsArguments)
    args, extra = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    output_dir = Path(args.output_dir)
    runs_done: list[dict] = []
    data_build_s = None
    if not args.aggregate_only:
        dataset_dir = Path(args.dataset_dir) if args.dataset_dir else output_dir / "data"
        data_build_s = round(build_data(dataset_dir, args.demo_num_patients, args.data_seed), 1)
        dataset = (dataset_dir, args.demo_num_patients)
        jobs = [(variant, seed) for seed in args.seeds for variant in args.variants]
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            runs_done = list(
                pool.map(lambda job: run_demo(output_dir, dataset, job[0], job[1], extra, args.threads), jobs)
            )
    runs, chance = read_runs(output_dir, args.variants, args.seeds)
    if not runs:
        raise FileNotFoundError(f"no {RESULTS} under {output_dir} for variants {args.variants} and seeds {args.seeds}")
    aggregated = aggregate(runs, chance) | {
        "arguments": asdict(args) | {"pretrain_arguments": extra},
        "runs": runs_done,
        "data_build_s": data_build_s,
    }
    table = markdown_table(aggregated)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "demo_seeds.md").write_text(table)
    (output_dir / "demo_seeds.json").write_text(json.dumps(aggregated, indent=2))
    print(table)
    return aggregated


if __name__ == "__main__":
    main()
