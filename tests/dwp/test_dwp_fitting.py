"""tfbdl.dwp.fitting: checkpoint blocks, the block's mini-batches, the block-wise BNN fit (schedule,
KL log, resume) and the accuracy table over splits."""

import numpy as np
import pytest

from tfbdl.dwp.fitting import accuracy_table, block_batches, checkpoint_block
from tfbdl.train.schedules import linear_schedule


def test_checkpoint_block_is_the_largest_divisor_not_above_the_wish():
    assert checkpoint_block(10000, 100) == 100 and checkpoint_block(90, 100) == 90
    assert checkpoint_block(98, 10) == 7 and checkpoint_block(7, 10) == 7
    assert checkpoint_block(13, 5) == 1 and checkpoint_block(4, 0) == 1


def test_the_schedule_is_the_releases_lr_linear():
    # lr * (1 - e / E) per whole data epoch e, as the reference's lr_linear.
    assert linear_schedule(0, 1.0, 4) == 1.0 and linear_schedule(2.5, 1.0, 4) == 0.5
    assert linear_schedule(3.99, 1.0, 4) == 0.25


def test_block_batches_are_seeded_passes_over_every_example():
    x, y = np.arange(10, dtype=np.float32)[:, None] * 10, np.arange(10)
    batches = list(block_batches(x, y, 4, 3, seed=7, trainer_epoch=2))
    assert [b[1].size for b in batches] == [4, 4, 2] * 3  # three passes, the last batch of each short
    for p in range(3):
        labels = np.concatenate([b[1] for b in batches[3 * p:3 * p + 3]])
        # data epoch 2 * 3 + p, in the order of its own (seed, epoch) generator
        np.testing.assert_array_equal(labels, np.random.default_rng([7, 6 + p]).permutation(10))
    for bx, by in batches:
        np.testing.assert_array_equal(bx[:, 0], by * 10.0)
    again = list(block_batches(x, y, 4, 3, seed=7, trainer_epoch=2))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    other = np.concatenate([b[1] for b in block_batches(x, y, 10, 1, seed=8, trainer_epoch=0)])
    assert not np.array_equal(other, np.random.default_rng([7, 0]).permutation(10))


def test_accuracy_table_means_and_sample_std_over_splits():
    results = [{"prior": p, "examples": n, "split": j, "accuracy": a}
               for p, n, accs in (("normal", 50, (0.6, 0.7)), ("dwp", 50, (0.9, 0.8)), ("dwp", 100, (0.95,)))
               for j, a in enumerate(accs)]
    rows = accuracy_table(results[::-1], ("normal", "dwp"), (50,)) + accuracy_table(results, ("dwp",), (100,))
    assert [(r["prior"], r["examples"]) for r in rows] == [("normal", 50), ("dwp", 50), ("dwp", 100)]
    assert rows[1]["accuracies"] == [0.9, 0.8]  # in split order, whatever order the results came in
    assert rows[1]["accuracy_mean"] == pytest.approx(0.85)
    assert rows[1]["accuracy_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert rows[2]["accuracy_std"] is None and rows[2]["accuracy_mean"] == pytest.approx(0.95)


def _toy_data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0.0, 0.1, size=(n, 18, 18, 1))
    for i in range(n):
        r = 4 if y[i] == 0 else 13
        x[i, r, r, 0] += 1.0
    return x.astype(np.float32), y.astype(np.int64)


def _toy_model(seed=3):
    from tfbdl.dwp.bnn import bayesian_fconv

    return bayesian_fconv(2, (18, 18, 1), widths=(2, 3), seed=seed)


def test_fit_bnn_blocks_checkpoints_blocks_follows_the_schedule_and_resumes(tmp_path):
    from tfbdl.dwp.fitting import fit_bnn_blocks
    from tfbdl.io import RunDir

    x, y = _toy_data()
    run = RunDir.open(tmp_path, "fit", "blocks", {"block": 4})
    model = _toy_model()
    rows = fit_bnn_blocks(model, x, y, epochs=6, block=4, batch_size=4, learning_rate=0.01, seed=5, run_dir=run)
    # 6 data epochs in blocks of 3 (the largest divisor of 6 not above 4): two checkpointed rows.
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["lr"] for r in rows] == pytest.approx([linear_schedule(e, 0.01, 6) for e in (0, 3)])
    assert all(np.isfinite(r["kl"]) and np.isfinite(r["train_loss"]) for r in rows)
    # A rerun on the finished run trains nothing: a fresh model gets the checkpointed state.
    fresh = _toy_model(seed=4)
    again = fit_bnn_blocks(fresh, x, y, epochs=6, block=4, batch_size=4, learning_rate=0.01, seed=5, run_dir=run)
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in rows]
    for a, b in zip(model.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fit_bnn_blocks_rejects_bad_settings():
    from tfbdl.dwp.fitting import fit_bnn_blocks
    from tfbdl.errors import InvalidOptionError

    x, y = _toy_data(4)
    for bad in ({"epochs": 0}, {"block": 0}, {"batch_size": 0}, {"learning_rate": 0.0}):
        settings = {"epochs": 2, "block": 1, "batch_size": 4, "learning_rate": 0.01, **bad}
        with pytest.raises(InvalidOptionError):
            fit_bnn_blocks(_toy_model(), x, y, seed=0, **settings)
