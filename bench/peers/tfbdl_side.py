"""The tfbdl side of compare_peers.py (project Python: python tfbdl_side.py SPEC.json).

Cases (``spec["case"]``):

- ``"prepare"``: writes the NTK inputs' weights: ``tfbdl.nn.lenet5(classes, (32, 32, 3), seed)``'s
  Keras weights as ``w0 .. w7`` (kernel, bias per layer) into ``spec["result"]``.
- ``"kernel"``: ``paper_kernel("convnet_gp", normalise=False).K(X)`` (the raw kernel, as the
  preset's layers define it), ``X`` the flattened images.
- ``"ntk"``: ``compute_ntk(lenet5 with the given weights, x, block_size, strategy, output)``.
"""

from __future__ import annotations

import numpy as np

from peers_common import read_spec, run_timed, warmup_inputs, write_result


def prepare(spec: dict) -> None:
    from tfbdl.nn import count_params, lenet5

    model = lenet5(spec["classes"], (32, 32, 3), seed=spec["seed"])
    weights = model.get_weights()
    np.savez(spec["result"], parameters=count_params(model), **{f"w{i}": w for i, w in enumerate(weights)})


def kernel_case(spec: dict, x: np.ndarray):
    from tfbdl.kernels import paper_kernel

    kernel = paper_kernel("convnet_gp", normalise=False)
    flat = x.reshape(len(x), -1)
    # Warm-up: one whole untimed K(X) (XLA compiles its steps for the shapes of this N).
    return lambda inputs: kernel.K(inputs.reshape(len(inputs), -1)).numpy(), flat, [flat]


def ntk_case(spec: dict, x: np.ndarray, weights: list[np.ndarray]):
    from tfbdl.nn import lenet5
    from tfbdl.ntk import compute_ntk

    model = lenet5(weights[-1].shape[0], (32, 32, 3), seed=0)
    model.set_weights(weights)

    def compute(inputs):
        return compute_ntk(model, inputs, block_size=spec["block"], strategy=spec["strategy"],
                           dtype=spec["dtype"], output=spec["output"], progress=False)

    return compute, x, warmup_inputs(x, spec["block"])


def main() -> None:
    spec = read_spec()
    if spec["case"] == "prepare":
        prepare(spec)
        return
    import tensorflow as tf

    data = np.load(spec["inputs"])
    x = data["x"].astype(spec["dtype"])
    if spec["case"] == "kernel":
        compute, x, warmups = kernel_case(spec, x)
    else:
        compute, x, warmups = ntk_case(spec, x, [data[f"w{i}"] for i in range(8)])
    values, warmup, seconds = run_timed(compute, x, warmups, spec["repeats"])
    info = f"tfbdl, TF {tf.__version__}"
    write_result(spec, values, warmup, seconds, info)


if __name__ == "__main__":
    main()
