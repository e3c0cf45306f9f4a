"""One network trained with the SWAG schedule, and the SGD, SWA and SWAG predictives it gives.

``swag`` trains one such member; ``multiswag`` trains several and averages them. Temperature
scaling of the predictives on a held-out split is here too, as both use it.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.bdl.data import augmented_epochs
from tfbdl.cli.bdl.presets import SwagPreset

__all__ = ["temperature_scaled", "train_member"]


def train_member(run, preset: SwagPreset, data, *, num_classes: int, seed: int, strategy: str,
                 eval_sets: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Train one network with the SWAG schedule in ``run`` (resumable) on ``data = (x, y)`` and
    return ``{set: {method: probs [N, C]}}`` on each of ``eval_sets`` for the methods ``sgd``
    (final weights), ``swa`` (the mean, batch norm refreshed) and ``swag`` (sample average).
    The sets are predicted together, so every SWAG sample costs one batch-norm refresh."""
    import keras

    from tfbdl.bayes.predictive import PointPredictive, SWAGPredictive
    from tfbdl.bayes.swag import SWAG, SWAGCollector, refresh_batch_norm
    from tfbdl.nn import build_model
    from tfbdl.train.loop import Trainer
    from tfbdl.train.schedules import swag_schedule
    from tfbdl.train.strategy import get_strategy
    from tfbdl.train.weight_decay import weight_decay_for_prior

    x_train, y_train = data
    keras.utils.set_random_seed(seed)
    distribution = get_strategy(strategy)
    with distribution.scope():
        model = build_model(preset.model, num_classes=num_classes, input_shape=x_train.shape[1:],
                            seed=seed)
    # Outside the scope: SWAG's moments are plain variables that every process updates alike from
    # the (mirrored) weights after each epoch; a distributed variable has no scatter_nd_update.
    swag = SWAG(model.trainable_variables, max_rank=preset.max_rank)
    weight_decay = preset.weight_decay
    if preset.prior_var is not None:
        weight_decay += weight_decay_for_prior(preset.prior_var, y_train.size)
    trainer = Trainer(model, lambda: keras.optimizers.SGD(learning_rate=preset.lr_init, momentum=0.9),
                      weight_decay=weight_decay, strategy=distribution)
    batches = augmented_epochs(x_train, y_train, preset.batch_size, seed) if preset.augment else (x_train, y_train)
    trainer.fit(batches, preset.epochs, run_dir=run, seed=seed, batch_size=preset.batch_size,
                lr_schedule=lambda epoch: swag_schedule(epoch, preset.lr_init, preset.swa_lr, preset.swa_start),
                callbacks=[SWAGCollector(swag, start_epoch=preset.swa_start)], verbose=True)

    bn_inputs = x_train[:preset.bn_images]  # these data sets are stored in no class order

    def train_batches():
        return (bn_inputs[i:i + 256] for i in range(0, len(bn_inputs), 256))

    names = list(eval_sets)
    x_all = np.concatenate([eval_sets[n] for n in names])
    probs = {"sgd": PointPredictive(model).predict(x_all)}
    final = [v.numpy() for v in model.trainable_variables]
    swag.assign_mean()
    refresh_batch_norm(model, train_batches())
    probs["swa"] = PointPredictive(model).predict(x_all)
    for v, value in zip(model.trainable_variables, final):
        v.assign(value)
    probs["swag"] = SWAGPredictive(model, swag, bn_batches=train_batches, seed=seed).predict(x_all, preset.samples)
    bounds = np.cumsum([0] + [len(eval_sets[n]) for n in names])
    return {name: {method: np.asarray(p[bounds[i]:bounds[i + 1]], dtype=np.float64) for method, p in probs.items()}
            for i, name in enumerate(names)}


def temperature_scaled(val_probs: dict, y_val, test_probs: dict) -> tuple[dict, dict]:
    """Each method's test predictive after temperature scaling fitted on the validation split:
    ``({method: probs}, {method: temperature})``."""
    from tfbdl.bayes.temperature import apply_temperature, fit_temperature, probabilities_to_logits

    scaled, temperatures = {}, {}
    for method, p_val in val_probs.items():
        temperatures[method] = fit_temperature(probabilities_to_logits(p_val), y_val)
        scaled[method] = apply_temperature(probabilities_to_logits(test_probs[method]), temperatures[method])
    return scaled, temperatures
