#!/usr/bin/env python
"""Fit the polynomial behind tfbdl.kernels.fastmath.acos, and print its coefficients.

asin(s) = s + s * z * R(z) with z = s^2 on s in [0, 1/2]. R is known exactly from the Taylor
series of asin (coefficients (2n)! / (4^n (n!)^2 (2n+1)), summed far past float64 precision), and
is fitted by least squares in the Chebyshev basis on z in [0, 1/4], then converted to monomials
for Horner evaluation. Prints the coefficients (constant first) and the largest error of asin.
"""

from fractions import Fraction
from math import factorial

import numpy as np

DEGREE = 11


def r_exact(z: np.ndarray, terms: int = 60) -> np.ndarray:
    coefficients = [float(Fraction(factorial(2 * n), 4**n * factorial(n) ** 2 * (2 * n + 1))) for n in range(1, terms)]
    return np.polynomial.polynomial.polyval(z, coefficients)


def main() -> None:
    z = 0.125 * (1 - np.cos(np.linspace(0, np.pi, 4000)))  # Chebyshev-spaced points on [0, 1/4]
    fit = np.polynomial.chebyshev.Chebyshev.fit(z, r_exact(z), DEGREE, domain=[0, 0.25])
    monomial = fit.convert(kind=np.polynomial.Polynomial, domain=[-1, 1], window=[-1, 1]).coef
    s = np.linspace(0, 0.5, 200_001)
    approx = s + s * s**2 * np.polynomial.polynomial.polyval(s**2, monomial)
    exact = s + s * s**2 * r_exact(s**2)
    print("ASIN_COEFFICIENTS = (")
    for c in monomial:
        print(f"    {c!r},")
    print(")")
    print(f"# largest relative error of asin on [0, 1/2]: {np.max(np.abs(approx - exact)[1:] / exact[1:]):.2e}")


if __name__ == "__main__":
    main()
