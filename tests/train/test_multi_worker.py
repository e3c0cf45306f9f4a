"""Multi-worker training on one machine: two ``MultiWorkerMirroredStrategy`` workers (TF_CONFIG on
127.0.0.1) train the same weights as one process, only the chief writes, and a run whose worker
is killed resumes from the chief's last checkpoint to the uninterrupted run's weights; workers
that do not see the same checkpoint (no shared folder) refuse to start instead of diverging.

Each worker is a subprocess on the CPU with one thread. Both processes see every global batch of
``BATCH`` images and train on half of it; the Trainer scales each worker's summed loss by the
global batch size and the strategy sums the gradients, so the step is the one-process step.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

EPOCHS, IMAGES, BATCH, SEED = 4, 192, 24, 3  # 8 steps per epoch
STEPS_PER_EPOCH = IMAGES // BATCH
KILL_AT_STEP = 2 * STEPS_PER_EPOCH + 3  # in epoch 3, after the chief checkpointed epoch 2

# One training process: the Trainer on a small MLP over MNIST images, --strategy default|multi-worker.
WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from tfbdl.data import load_embedded
    from tfbdl.io import RunDir
    from tfbdl.train import Callback, Trainer, get_strategy, is_chief

    out, strategy_name, epochs, images, batch, seed = sys.argv[1:7]
    epochs, images, batch, seed = int(epochs), int(images), int(batch), int(seed)
    strategy = get_strategy(strategy_name)  # first: the multi-worker strategy must precede other ops
    x, y = load_embedded("mnist_sample", "train")
    pick = np.random.default_rng(seed).permutation(len(x))[:images]
    x = (x[pick].reshape(images, -1) / 255.0).astype("float32")
    y = y[pick]

    class Steps(Callback):
        def on_step_end(self, trainer, step):
            print(f"step {step}", flush=True)

    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10)])
    trainer = Trainer(model, lambda: keras.optimizers.SGD(0.1, momentum=0.9), weight_decay=1e-3,
                      strategy=strategy)
    chief = is_chief(strategy)
    config = {"images": images, "batch": batch, "seed": seed}
    # Every worker reads the checkpoints of the one (shared) run dir; only the chief creates it.
    run = (RunDir.open(out, "mw", "run", config) if chief
           else RunDir(Path(out) / "mw" / "run", "mw", "run", config))
    resumed_from = 0
    if (run.path / "checkpoints/train/checkpoint.json").exists():
        resumed_from = json.loads((run.path / "checkpoints/train/checkpoint.json").read_text())["epoch"]
    print(f"resumed_from {resumed_from}", flush=True)
    rows = trainer.fit((x, y), epochs, run_dir=run, seed=seed, batch_size=batch,
                       lr_schedule=lambda e: 0.1 / (1 + e), callbacks=[Steps()], verbose=False)
    if chief:
        np.savez(run.file("weights.npz"), *[v.numpy() for v in model.trainable_variables])
    print("done", json.dumps([r["train_loss"] for r in rows]), flush=True)
""")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(tf_config: dict | None) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                           os.environ.get("PYTHONPATH", "")]))
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _start(script: Path, out: Path, strategy: str, log: Path, tf_config: dict | None = None):
    args = [sys.executable, str(script), str(out), strategy, str(EPOCHS), str(IMAGES), str(BATCH), str(SEED)]
    with open(log, "w") as handle:
        return subprocess.Popen(args, env=_env(tf_config), stdout=handle, stderr=subprocess.STDOUT)


def _start_workers(script: Path, outs: list[Path], logs: list[Path], ports: list[int]):
    """A cluster of workers on 127.0.0.1 ``ports``, worker ``i`` writing to ``outs[i]``."""
    addresses = [f"127.0.0.1:{p}" for p in ports]
    return [_start(script, out, "multi-worker", log,
                   {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i, (out, log) in enumerate(zip(outs, logs))]


def _finish(procs, logs, timeout=240.0):
    deadline = time.monotonic() + timeout
    for proc, log in zip(procs, logs):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"a worker did not finish in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        assert proc.returncode == 0, log.read_text()[-3000:]


def _weights(out: Path) -> list[np.ndarray]:
    with np.load(out / "mw" / "run" / "weights.npz") as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _metrics_epochs(out: Path) -> list[int]:
    rows = (out / "mw" / "run" / "metrics.csv").read_text().splitlines()
    return [int(row.split(",")[0]) for row in rows[1:]]


def _steps_logged(log: Path) -> int:
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("step ")]
    return int(lines[-1].split()[1]) if lines else 0


def test_two_workers_match_one_process_and_resume_after_a_kill(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    single, whole, killed, split = (tmp_path / name for name in ("single", "whole", "killed", "split"))

    # Side by side: one process (default strategy), an uninterrupted two-worker run, and a
    # two-worker run whose worker 1 is SIGKILLed in epoch 3 (then the chief, waiting for it).
    logs = [tmp_path / f"{name}.log" for name in ("single", "whole0", "whole1", "killed0", "killed1")]
    ports = _free_ports(4)
    procs = ([_start(script, single, "default", logs[0])] + _start_workers(script, [whole] * 2, logs[1:3], ports[:2])
             + _start_workers(script, [killed] * 2, logs[3:], ports[2:]))
    try:
        _wait_for(lambda: _steps_logged(logs[4]) >= KILL_AT_STEP or procs[4].poll() is not None,
                  240.0, f"worker 1 to reach step {KILL_AT_STEP}")
        procs[4].send_signal(signal.SIGKILL)
        procs[4].wait(timeout=30)
        try:
            procs[3].wait(timeout=5)  # it cannot finish the epoch without worker 1
        except subprocess.TimeoutExpired:
            procs[3].send_signal(signal.SIGKILL)
            procs[3].wait(timeout=30)
        _finish(procs[:3], logs[:3])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    reference, distributed = _weights(single), _weights(whole)
    for a, b in zip(reference, distributed):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    losses = [json.loads(log.read_text().split("done ", 1)[1]) for log in logs[:3]]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[1] == losses[2]  # every worker reports the global loss
    assert losses[0][-1] < 0.7 * losses[0][0]  # it trained
    # Only the chief wrote: one metrics row per epoch, no second writer's duplicates.
    assert _metrics_epochs(whole) == list(range(1, EPOCHS + 1))

    assert procs[4].returncode == -signal.SIGKILL, logs[4].read_text()[-3000:]
    assert procs[3].returncode != 0, "the chief finished although worker 1 was killed"
    checkpoint = json.loads((killed / "mw" / "run" / "checkpoints/train/checkpoint.json").read_text())
    assert 1 <= checkpoint["epoch"] < EPOCHS
    assert not (killed / "mw" / "run" / "weights.npz").exists()
    shutil.copytree(killed, split)

    # The same command again: both workers resume from the chief's checkpoint and finish. Beside
    # them, a pair whose worker 1 sees an empty folder instead of the chief's: both refuse to start.
    logs = [tmp_path / f"{name}.log" for name in ("resumed0", "resumed1", "split0", "split1")]
    ports = _free_ports(4)
    procs = (_start_workers(script, [killed] * 2, logs[:2], ports[:2])
             + _start_workers(script, [split, tmp_path / "empty"], logs[2:], ports[2:]))
    try:
        _finish(procs[:2], logs[:2])
        for proc, log in zip(procs[2:], logs[2:]):
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a worker of the split run hung:\n{log.read_text()[-3000:]}")
            assert proc.returncode != 0, log.read_text()[-3000:]
            assert f"start from different epochs [0, {checkpoint['epoch']}]" in log.read_text(), log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for log in logs[:2]:
        steps = [ln for ln in log.read_text().splitlines() if ln.startswith("step ")]
        assert f"resumed_from {checkpoint['epoch']}" in log.read_text()
        assert steps[0] == f"step {checkpoint['epoch'] * STEPS_PER_EPOCH + 1}"  # no step is redone
        assert steps[-1] == f"step {EPOCHS * STEPS_PER_EPOCH}"
    for a, b in zip(distributed, _weights(killed)):
        np.testing.assert_array_equal(b, a)
    assert _metrics_epochs(killed) == list(range(1, EPOCHS + 1))
