"""The neural-tangents side of compare_peers.py (runs in the peers venv: python nt_side.py SPEC.json).

Cases (``spec["case"]``):

- ``"kernel"``: the NNGP of ConvNet GP built with ``neural_tangents.stax``: ``depth`` x (Conv k x k
  "SAME" + Relu), Flatten, Dense(1). neural-tangents' NTK parameterisation gives a conv the
  output covariance ``W_std² * mean over the patch (zero padding counted) + b_std²`` on the input
  covariance ``mean over channels of x * y``: the per-fan-in variances of tfbdl.kernels, so
  ``W_std² = var_weight * k²`` for the convs and ``var_weight`` for the readout (Flatten + Dense
  is ``var_bias + var_weight * mean over locations``). Computed on the blocks on and above the
  diagonal (``block`` images each), each block one jit-compiled ``kernel_fn`` call.
- ``"ntk"``: the empirical NTK of LeNet5 (a pure JAX function of the Keras weights, NHWC, as
  tfbdl.nn.lenet5) with ``empirical_ntk_fn(..., implementation=JACOBIAN_CONTRACTION)``,
  ``trace_axes=(-1,)`` for "trace" and ``()`` for "full", on the same upper-triangle block plan.
  neural-tangents' trace is the *mean* over the traced outputs and tfbdl's "trace" their sum, so
  the trace values are multiplied by K (after the timing) before they are written.
"""

from __future__ import annotations

import math

import numpy as np

from peers_common import mirror, read_spec, run_timed, upper_blocks, warmup_inputs, write_result


def kernel_case(spec: dict, x: np.ndarray):
    import jax
    import jax.numpy as jnp
    from neural_tangents import stax

    k, vw, vb = spec["kernel_size"], spec["var_weight"], spec["var_bias"]
    layers = []
    for _ in range(spec["depth"]):
        layers += [stax.Conv(1, (k, k), padding="SAME", W_std=math.sqrt(vw * k * k), b_std=math.sqrt(vb)),
                   stax.Relu()]
    _, _, kernel_fn = stax.serial(*layers, stax.Flatten(), stax.Dense(1, W_std=math.sqrt(vw), b_std=math.sqrt(vb)))
    diag = jax.jit(lambda a: kernel_fn(a, None, "nngp"))
    pair = jax.jit(lambda a, b: kernel_fn(a, b, "nngp"))
    return _block_plan(x, spec["block"], 1, diag, pair, jnp), warmup_inputs(x, spec["block"])


def lenet5_apply(params, x):
    """LeNet5 logits ``[n, K]`` of images ``x [n, 32, 32, 3]`` (NHWC; Keras weight layout)."""
    import jax
    import jax.numpy as jnp

    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = params
    h = x
    for w, b in ((w1, b1), (w2, b2)):
        h = jax.lax.conv_general_dilated(h, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
        h = jax.nn.relu(h)
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ w3 + b3)
    return h @ w4 + b4


def ntk_case(spec: dict, x: np.ndarray, weights: list[np.ndarray]):
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt

    params = [(jnp.asarray(weights[2 * i]), jnp.asarray(weights[2 * i + 1])) for i in range(4)]
    full = spec["output"] == "full"
    ntk_fn = nt.empirical_ntk_fn(lenet5_apply, trace_axes=() if full else (-1,), vmap_axes=0,
                                 implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
    classes = weights[-1].shape[0]
    kf = classes if full else 1

    def flat(theta):  # [a, b, K, K] -> [a*K, b*K] (row i*K + k)
        if not full:
            return theta
        a, b = theta.shape[:2]
        return jnp.transpose(theta, (0, 2, 1, 3)).reshape(a * kf, b * kf)

    diag = jax.jit(lambda a: flat(ntk_fn(a, None, params)))
    pair = jax.jit(lambda a, b: flat(ntk_fn(a, b, params)))
    compute = _block_plan(x, spec["block"], kf, diag, pair, jnp)

    def unflattened(inputs):
        out = compute(inputs)
        n = len(inputs)
        return out.reshape(n, kf, n, kf).transpose(0, 2, 1, 3) if full else out

    return unflattened, warmup_inputs(x, spec["block"])


def _block_plan(x, block, kf, diag, pair, jnp):
    """``compute(inputs)``: the ``[n*kf, n*kf]`` matrix from the upper-triangle blocks, mirrored."""

    def compute(inputs):
        n = len(inputs)
        out = np.empty((n * kf, n * kf), dtype=inputs.dtype)
        for (r0, r1), (c0, c1) in upper_blocks(n, block):
            xa = jnp.asarray(inputs[r0:r1])
            value = diag(xa) if (r0, r1) == (c0, c1) else pair(xa, jnp.asarray(inputs[c0:c1]))
            out[r0 * kf:r1 * kf, c0 * kf:c1 * kf] = np.asarray(value)
        return mirror(out, kf, block)

    return compute


def main() -> None:
    spec = read_spec()
    import jax

    if spec["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt

    data = np.load(spec["inputs"])
    x = data["x"].astype(spec["dtype"])
    if spec["case"] == "kernel":
        compute, warmups = kernel_case(spec, x)
    else:
        weights = [data[f"w{i}"].astype(spec["dtype"]) for i in range(8)]
        compute, warmups = ntk_case(spec, x, weights)
    values, warmup, seconds = run_timed(compute, x, warmups, spec["repeats"])
    if spec["case"] == "ntk" and spec["output"] == "trace":
        values = values * weights[-1].shape[0]  # trace_axes gives the mean over the outputs; tfbdl the sum
    info = f"neural-tangents {nt.__version__}, jax {jax.__version__} ({jax.default_backend()})"
    write_result(spec, values, warmup, seconds, info)


if __name__ == "__main__":
    main()
