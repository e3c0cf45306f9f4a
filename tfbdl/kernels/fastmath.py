"""A vectorisable arccos: the ReLU kernel's arccos dominates its cost, and TensorFlow's CPU
arccos is scalar code, 15-30 times slower than a polynomial of the same accuracy.

acos(x) is range-reduced to asin(s) on s in [0, 1/2] (acos(x) = pi/2 - asin(x) for |x| <= 1/2,
2 asin(sqrt((1 - |x|) / 2)) beyond), with asin(s) = s + s z R(z), z = s^2, and R a degree-11
polynomial fitted to the exact Taylor series by scripts/fit_asin_polynomial.py. Its largest
relative error on asin is 2.2e-16, so the result matches tf.acos to float64 rounding.
"""

import math

import tensorflow as tf

__all__ = ["ASIN_COEFFICIENTS", "acos"]

ASIN_COEFFICIENTS = (  # R(z), constant term first (from scripts/fit_asin_polynomial.py)
    0.16666666666666638,
    0.07500000000023221,
    0.044642857100377444,
    0.030381947533769625,
    0.022372042699386446,
    0.01735534748106274,
    0.013928669825114301,
    0.011882647351587578,
    0.007769345758830746,
    0.016133838501266786,
    -0.01091193516053006,
    0.02828587805796704,
)


def acos(x: tf.Tensor) -> tf.Tensor:
    """arccos of x in [-1, 1] (elementwise, any float dtype), built from mul/add/sqrt only."""
    a = tf.abs(x)
    small = a <= 0.5
    half_gap = (1 - a) / 2
    z = tf.where(small, a * a, half_gap)
    # sqrt of half_gap, not of z: z is 0 at x = 0, where sqrt's infinite gradient would turn
    # into NaN through the unselected branch of the where.
    s = tf.where(small, a, tf.sqrt(half_gap))
    r = tf.constant(ASIN_COEFFICIENTS[-1], dtype=x.dtype)
    for coefficient in reversed(ASIN_COEFFICIENTS[:-1]):
        r = r * z + coefficient
    asin_s = s + s * z * r
    acos_abs = tf.where(small, math.pi / 2 - asin_s, 2 * asin_s)
    return tf.where(x < 0, math.pi - acos_abs, acos_abs)
