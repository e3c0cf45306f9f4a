#!/usr/bin/env python
"""tfbdl against neural-tangents on the same kernels: entries per second, ratio, and agreement.

    python bench/peers/compare_peers.py [--cases kernel ntk ntk10] [--n N] [--large] [--repeats R]
        [--ntk-strategies S ...] [--venv PATH] [--out FILE]

neural-tangents 0.6.5 needs jax 0.4.30 (and imports TensorFlow and tf2jax), so it runs in a side
virtual environment outside the repository (``--venv``, default ``$TFBDL_PEERS_VENV`` or
``~/.cache/tfbdl-peers/venv``), created on first use by ``setup_env.sh`` from the pins in
``requirements-peers.txt`` (untimed, and without the timing lock). Each measurement is one child
process (``tfbdl_side.py`` in this Python, ``nt_side.py`` in the side venv) that reads the same
``.npz`` inputs and weights and writes the values and timings back. Per case the order is fixed:
tfbdl (each strategy) first, then neural-tangents. Each child first runs untimed warm-up passes
(TF tracing / XLA compilation; reported as "warm-up"), then ``--repeats`` timed runs, of which
the fastest is reported. Each child holds ``flock /tmp/bench.lock`` while it runs.

Cases:

- ``kernel32`` / ``kernel64``: the ConvNet GP NNGP K(X, X) (7 x (conv 7x7 "same" + ReLU), readout;
  per-fan-in variances 2.79 * 49 for the convs, 2.79 for the readout, biases 7.86) on N MNIST
  training images (default 512; random images when MNIST is not on disk), float32 / float64
  (jax x64). tfbdl: ``paper_kernel("convnet_gp", normalise=False).K(X)``, the raw kernel
  (the default preset divides by K_raw(1, 1)); neural-tangents: ``stax`` Conv(SAME)/Relu x 7,
  Flatten, Dense, ``kernel_fn(., ., "nngp")`` on the upper-triangle blocks of 64 images.
- ``ntk1``: the empirical NTK of ``tfbdl.nn.lenet5(1, (32, 32, 3))`` (652,571 parameters) on N
  32x32x3 images (default 400, 2,000 with ``--large``): ``compute_ntk`` with each strategy
  against ``empirical_ntk_fn`` (JACOBIAN_CONTRACTION) of the same network as a JAX function of the
  same weights; both on the blocks on and above the diagonal (``--block-size`` images), mirrored.
- ``ntk10_trace`` / ``ntk10_full``: the same with ten logits, output "trace" (``trace_axes=(-1,)``)
  and "full" (``trace_axes=()``, [N, N, 10, 10]).

Entries are those of the returned matrix (N² per kernel, N² · 100 for ``ntk10_full``) per second
of the fastest timed run; ratio = tfbdl / neural-tangents (above 1: tfbdl faster); max rel diff =
max |tfbdl - nt| / max |nt|, with max |nt| the largest entry. The table is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # tfbdl's loaders, from this checkout
DEFAULT_VENV = pathlib.Path(os.environ.get("TFBDL_PEERS_VENV", "~/.cache/tfbdl-peers/venv")).expanduser()
CASES = ("kernel32", "kernel64", "ntk1", "ntk10_trace", "ntk10_full")
CONVNET_GP = {"depth": 7, "kernel_size": 7, "var_weight": 2.79, "var_bias": 7.86}  # tfbdl.kernels.presets
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def default_strategies() -> list[str]:
    """Every contraction strategy of tfbdl.ntk.empirical except the slow reference ``jacobian``."""
    out = subprocess.run([sys.executable, "-c", "from tfbdl.ntk.empirical import STRATEGIES; print(*STRATEGIES)"],
                         check=True, capture_output=True, text=True, env=child_env(), cwd=REPO)
    return [s for s in out.stdout.split() if s != "jacobian"]


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def ensure_venv(venv: pathlib.Path) -> pathlib.Path:
    """The side venv's python, created / updated by setup_env.sh when needed (untimed, unlocked)."""
    if pathlib.Path(sys.prefix).resolve() == venv.resolve():
        sys.exit(f"--venv {venv} is the environment running this script; give the peers their own")
    env = dict(os.environ, PROJECT_PYTHON=sys.executable)
    subprocess.run(["bash", str(HERE / "setup_env.sh"), str(venv)], check=True, env=env)
    return venv / "bin" / "python"


@contextlib.contextmanager
def bench_lock(path: str):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_side(python, script: str, spec: dict, work: pathlib.Path, lock: str | None) -> dict:
    """Run one side on ``spec`` (under the timing lock when ``lock``) and load what it wrote."""
    name = spec["label"].replace(" ", "_").replace("/", "_")
    spec = dict(spec, result=str(work / f"{name}.npz"))
    spec_path = work / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    with bench_lock(lock) if lock else contextlib.nullcontext():
        subprocess.run([str(python), str(HERE / script), str(spec_path)], check=True, env=child_env(), cwd=HERE)
    with np.load(spec["result"]) as data:
        return {key: data[key] for key in data.files}


def mnist_images(n: int, seed: int) -> tuple[np.ndarray, str]:
    """``[n, 28, 28, 1]`` in [0, 1]: the first n MNIST training images, or uniform noise."""
    try:
        from tfbdl.data.datasets import load_dataset

        raw, _ = load_dataset("mnist", "train", None, download=False, progress=False)
        if len(raw) >= n:
            return raw[:n].astype(np.float64) / 255.0, f"the first {n} MNIST training images"
    except Exception as e:  # noqa: BLE001  (whatever keeps MNIST from loading: fall back)
        reason = type(e).__name__
    else:
        reason = f"only {len(raw)} images"
    return np.random.default_rng(seed).random((n, 28, 28, 1)), f"{n} uniform random 28x28 images ({reason})"


def cifar_sized(n: int, seed: int) -> tuple[np.ndarray, str]:
    """``[n, 32, 32, 3]`` float32 uniform noise (the NTK's speed does not depend on the pixels)."""
    x = np.random.default_rng(seed + 1).random((n, 32, 32, 3)).astype(np.float32)
    return x, f"{n} uniform random 32x32x3 images"


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / np.abs(b.astype(np.float64)).max())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--n", type=int, default=None,
                        help="images in every case (default: 512 for the kernel cases, 400 for the NTK cases)")
    parser.add_argument("--large", action="store_true", help="N = 2000 for the NTK cases (unless --n is given)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, metavar="CASE",
                        help=f"cases to run (default: all of {', '.join(CASES)})")
    parser.add_argument("--ntk-strategies", nargs="+", default=None, metavar="S",
                        help="compute_ntk strategies to time (default: every name in "
                             "tfbdl.ntk.empirical.STRATEGIES except 'jacobian')")
    parser.add_argument("--venv", type=pathlib.Path, default=DEFAULT_VENV,
                        help=f"the side venv for neural-tangents, created if missing (default: {DEFAULT_VENV}; "
                             "env TFBDL_PEERS_VENV); never the project's environment")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="file to write the Markdown table to (default: a new temporary file)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per measurement; the fastest counts")
    parser.add_argument("--block-size", type=int, default=50, help="images per NTK block (both sides)")
    parser.add_argument("--kernel-block", type=int, default=64,
                        help="images per block of neural-tangents' analytic kernel (tfbdl uses its pair_batch)")
    parser.add_argument("--lock", default="/tmp/bench.lock", help="file locked (flock) around each timed child")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.n is not None and args.n < 2) or args.block_size < 1 or args.kernel_block < 1:
        parser.error("--repeats, --block-size and --kernel-block must be >= 1 and --n >= 2")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    strategies = args.ntk_strategies or default_strategies()
    peer_python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory(prefix="tfbdl-peers-") as work:
        compare(args, strategies, peer_python, pathlib.Path(work))


def compare(args, strategies: list[str], peer_python: pathlib.Path, work: pathlib.Path) -> None:
    """Run every case (inputs, weights and results under ``work``) and print / write the table."""
    n_kernel = args.n or 512
    n_ntk = args.n or (2000 if args.large else 400)
    rows, notes = [], []

    kernel_cases = [c for c in args.cases if c.startswith("kernel")]
    if kernel_cases:
        x, source = mnist_images(n_kernel, args.seed)
        np.savez(work / "kernel_inputs.npz", x=x)
        notes.append(f"kernel cases: {source}; neural-tangents blocks of {args.kernel_block} (warm-up: two blocks); "
                     "tfbdl warm-up: one whole untimed K(X) (XLA compiles for the shapes of each N)")
        for case in kernel_cases:
            dtype = "float32" if case == "kernel32" else "float64"
            spec = {"case": "kernel", "dtype": dtype, "inputs": str(work / "kernel_inputs.npz"),
                    "repeats": args.repeats, "block": args.kernel_block, **CONVNET_GP}
            label = f"ConvNet GP NNGP K(X,X), N={n_kernel}, {dtype}"
            ours = run_side(sys.executable, "tfbdl_side.py", dict(spec, label=f"{case}_tfbdl"), work, args.lock)
            peer = run_side(peer_python, "nt_side.py", dict(spec, label=f"{case}_nt"), work, args.lock)
            rows.append(row(label, ours, peer, dtype, n_kernel**2))

    ntk_cases = [c for c in args.cases if c.startswith("ntk")]
    if ntk_cases:
        x, source = cifar_sized(n_ntk, args.seed)
        notes.append(f"NTK cases: {source}; blocks of {args.block_size} on both sides")
        for classes in sorted({1 if c == "ntk1" else 10 for c in ntk_cases}):
            weights = run_side(sys.executable, "tfbdl_side.py",
                               {"case": "prepare", "classes": classes, "seed": args.seed, "label": f"weights{classes}"},
                               work, None)
            notes.append(f"LeNet5 with {classes} output(s): {int(weights['parameters']):,} parameters")
            np.savez(work / f"ntk{classes}_inputs.npz", x=x, **{f"w{i}": weights[f"w{i}"] for i in range(8)})
        for case in ntk_cases:
            classes, output = (1, "trace") if case == "ntk1" else (10, case.split("_")[1])
            spec = {"case": "ntk", "dtype": "float32", "inputs": str(work / f"ntk{classes}_inputs.npz"),
                    "repeats": args.repeats, "block": args.block_size, "output": output}
            entries = n_ntk**2 * (classes**2 if output == "full" else 1)
            ours_by_strategy = {}
            for strategy in strategies:
                ours_by_strategy[strategy] = run_side(sys.executable, "tfbdl_side.py",
                                                      dict(spec, strategy=strategy, label=f"{case}_{strategy}"),
                                                      work, args.lock)
            peer = run_side(peer_python, "nt_side.py", dict(spec, label=f"{case}_nt"), work, args.lock)
            what = f"LeNet5 eNTK, {classes} logit{'s' if classes > 1 else ''}" + (f" {output}" if classes > 1 else "")
            for strategy, ours in ours_by_strategy.items():
                rows.append(row(f"{what}, N={n_ntk}, `{strategy}`", ours, peer, "float32", entries))

    table = render(rows, notes, args)
    out = args.out or pathlib.Path(tempfile.mkstemp(prefix="tfbdl-peers-", suffix=".md")[1])
    out.write_text(table)
    print(table)
    print(f"(written to {out})")
    failed = [r["label"] for r in rows if not r["agrees"]]
    if failed:
        sys.exit(f"values disagree beyond the tolerance in: {'; '.join(failed)}")


def row(label: str, ours: dict, peer: dict, dtype: str, entries: int) -> dict:
    diff = rel_diff(ours["values"], peer["values"])
    t_ours, t_peer = float(ours["seconds"].min()), float(peer["seconds"].min())
    result = {"label": label, "ours": entries / t_ours, "peer": entries / t_peer, "diff": diff,
              "agrees": diff <= TOLERANCE[dtype], "t_ours": t_ours, "t_peer": t_peer,
              "w_ours": float(ours["warmup_s"]), "w_peer": float(peer["warmup_s"]),
              "info": (str(ours["info"]), str(peer["info"]))}
    print(f"{label}: tfbdl {t_ours:.2f} s (warm-up {result['w_ours']:.1f} s), neural-tangents {t_peer:.2f} s "
          f"(warm-up {result['w_peer']:.1f} s), max rel diff {diff:.1e}", flush=True)
    return result


def render(rows: list[dict], notes: list[str], args) -> str:
    lines = ["| case | tfbdl entries/s | neural-tangents entries/s | ratio | max rel diff |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        flag = "" if r["agrees"] else " (over tolerance)"
        lines.append(f"| {r['label']} | {r['ours']:,.0f} | {r['peer']:,.0f} | {r['ours'] / r['peer']:.2f}x "
                     f"| {r['diff']:.1e}{flag} |")
    lines += ["", "| case | tfbdl s (warm-up s) | neural-tangents s (warm-up s) |", "| --- | ---: | ---: |"]
    lines += [f"| {r['label']} | {r['t_ours']:.2f} ({r['w_ours']:.1f}) | {r['t_peer']:.2f} ({r['w_peer']:.1f}) |"
              for r in rows]
    infos = sorted({part for r in rows for part in r["info"]})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"Fastest of {args.repeats} timed run(s) after untimed warm-up; order per case: tfbdl, then "
              f"neural-tangents. {os.cpu_count()} CPU cores, load average {load:.1f} at the end. "
              + "; ".join(infos) + ".", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")
