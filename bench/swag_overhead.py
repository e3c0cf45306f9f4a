#!/usr/bin/env python
"""How much one SWAG collection adds to an SGD epoch.

    python bench/swag_overhead.py [--examples 1000] [--batch-size 128] [--repeats 3]

For LeNet5 (28x28x1) and PreResNet20 (32x32x3) it times one SGD epoch over ``--examples``
images and one SWAG collection (K = 20 deviations), and prints the ratio. SWAG collects once per
epoch (as in the paper), so the ratio is the overhead; the issue's target is below 5%.
"""

import argparse
import time

import numpy as np


def time_epoch(model, x, y, batch_size: int) -> float:
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    step(x[:batch_size], y[:batch_size])  # trace
    start = time.perf_counter()
    for i in range(0, len(x) - batch_size + 1, batch_size):
        step(x[i:i + batch_size], y[i:i + batch_size])
    return time.perf_counter() - start


def time_collection(model, repeats: int) -> float:
    from tfbdl.bayes.swag import SWAG

    swag = SWAG(model.trainable_variables, max_rank=20)
    swag.collect()  # trace
    start = time.perf_counter()
    for _ in range(repeats):
        swag.collect()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="images per timed epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="epochs / collections timed (best epoch, mean collection)")
    args = parser.parse_args()

    from tfbdl.nn import count_params, lenet5, preresnet20

    rng = np.random.default_rng(0)
    print(f"{'model':<12}{'parameters':>12}{'epoch s':>10}{'collect ms':>12}{'overhead':>10}")
    for name, factory, shape in (("lenet5", lenet5, (28, 28, 1)), ("preresnet20", preresnet20, (32, 32, 3))):
        model = factory(num_classes=10, input_shape=shape, seed=0)
        x = rng.random((args.examples, *shape), dtype=np.float32)
        y = rng.integers(0, 10, size=args.examples)
        epoch = min(time_epoch(model, x, y, args.batch_size) for _ in range(args.repeats))
        collect = time_collection(model, args.repeats * 10)
        print(f"{name:<12}{count_params(model):>12,}{epoch:>10.2f}{1000 * collect:>12.2f}{100 * collect / epoch:>9.2f}%")


if __name__ == "__main__":
    main()
