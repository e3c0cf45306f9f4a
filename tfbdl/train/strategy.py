"""The ``tf.distribute`` strategy named by ``--strategy default|mirrored|multi-worker``.

- ``default``: ``tf.distribute.get_strategy()``, the strategy of the enclosing scope (the
  no-op default strategy outside any scope): one device, no replication.
- ``mirrored``: ``MirroredStrategy`` over every visible GPU, or over the CPU when there is none.
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` environment
  variable (a JSON object with ``cluster`` and ``task``), one process per worker.

Create the model and the optimizer inside ``strategy.scope()`` (the :class:`~tfbdl.train.loop.Trainer`
does this for the optimizer and for a model that is not built yet).

In a multi-worker run every worker runs the same program on its share of each global batch; only
the chief writes files (:func:`is_chief`), and every worker must read the same checkpoints, so the
run folder must be one folder that every worker sees (a shared filesystem).
:func:`gather_from_workers` lets the workers compare a number before they go on (the Trainer
checks that they resume from the same epoch).
"""

from __future__ import annotations

import json
import os

from tfbdl.errors import InvalidOptionError

__all__ = ["STRATEGIES", "gather_from_workers", "get_strategy", "is_chief", "is_default_strategy",
           "is_multi_worker", "parse_tf_config"]

STRATEGIES = ("default", "mirrored", "multi-worker")


def parse_tf_config(text: str | None = None) -> dict:
    """The ``TF_CONFIG`` of this process (or ``text``), checked; InvalidOptionError if unusable.

    It must be a JSON object ``{"cluster": {"worker": ["host:port", ...], ...},
    "task": {"type": "worker", "index": i}}`` with ``task`` naming a member of ``cluster``.
    """
    if text is None:
        text = os.environ.get("TF_CONFIG")
    hint = (
        'set TF_CONFIG to e.g. \'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\' on each worker, or use --strategy mirrored '
        "on one machine"
    )
    if text is None or not str(text).strip():
        raise InvalidOptionError(f"--strategy multi-worker needs the TF_CONFIG environment variable; {hint}")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise InvalidOptionError(f"TF_CONFIG is not valid JSON ({e}); {hint}") from None
    if not isinstance(config, dict):
        raise InvalidOptionError(f"TF_CONFIG must be a JSON object; {hint}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise InvalidOptionError(f"TF_CONFIG has no 'cluster' object; {hint}")
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise InvalidOptionError(
                f"TF_CONFIG cluster[{job!r}] must be a non-empty list of 'host:port' strings; {hint}"
            )
    if "worker" not in cluster and "chief" not in cluster:
        raise InvalidOptionError(f"TF_CONFIG cluster lists no 'worker' (or 'chief'); {hint}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise InvalidOptionError(f"TF_CONFIG has no 'task' with 'type' and 'index'; {hint}")
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise InvalidOptionError(f"TF_CONFIG task type {kind!r} is not a job of the cluster; {hint}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise InvalidOptionError(
            f"TF_CONFIG task index {index!r} is outside cluster[{kind!r}] "
            f"(0..{len(cluster[kind]) - 1}); {hint}"
        )
    return config


def get_strategy(name: str = "default"):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`STRATEGIES`)."""
    key = str(name).strip().lower().replace("_", "-") if isinstance(name, str) else None
    if key not in STRATEGIES:
        raise InvalidOptionError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        )
    if key == "multi-worker":
        parse_tf_config()  # a clear error before TensorFlow tries to reach the cluster
    import tensorflow as tf

    if key == "default":
        return tf.distribute.get_strategy()
    if key == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] if gpus else ["/cpu:0"]
        return tf.distribute.MirroredStrategy(devices=devices)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (ValueError, RuntimeError) as e:
        raise InvalidOptionError(f"cannot start the multi-worker strategy from TF_CONFIG ({e})") from e


def is_chief(strategy=None) -> bool:
    """Whether this process should write files (checkpoints, logs) for ``strategy``.

    True except for a multi-worker run's workers other than the chief (the ``chief`` task, or
    worker 0 when the cluster has no chief).
    """
    if strategy is None:
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    kind, index = getattr(resolver, "task_type", None), getattr(resolver, "task_id", None)
    if kind in (None, "chief"):
        return True
    if kind == "worker":
        try:
            has_chief = "chief" in resolver.cluster_spec().as_dict()
        except Exception:  # noqa: BLE001 - an unusual resolver: treat as chief-less
            has_chief = False
        return not has_chief and index == 0
    return False


def is_default_strategy(strategy) -> bool:
    """Whether ``strategy`` is TensorFlow's no-op default strategy (one device, no replication)."""
    return type(strategy).__name__.startswith("_Default")


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` spans several processes (a cluster of more than one chief or worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return False
    try:
        spec = resolver.cluster_spec().as_dict()
    except Exception:  # noqa: BLE001 - an unusual resolver: treat as one process
        return False
    return sum(len(spec.get(job) or ()) for job in ("chief", "worker")) > 1


def gather_from_workers(strategy, value: float) -> list[float]:
    """``value`` of every replica of ``strategy``, in replica order (``[value]`` for one process).

    A collective operation in a multi-worker run: every worker must call it at the same point of
    its program, or the ones that did wait for the others (without a time limit).
    """
    if not is_multi_worker(strategy):
        return [float(value)]
    import tensorflow as tf

    local = tf.constant([float(value)], tf.float64)

    @tf.function
    def gather():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_gather(local, axis=0))

    return [float(v) for v in strategy.experimental_local_results(gather())[0].numpy()]
