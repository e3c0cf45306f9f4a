"""The README's "Use the pieces in your own code" examples run as printed, so they cannot go stale."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use the pieces in your own code"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def _run(index: int) -> dict:
    namespace = {"__name__": "__readme__"}
    exec(compile(_examples()[index], f"README example {index + 1}", "exec"), namespace)  # noqa: S102
    return namespace


def test_the_section_holds_the_four_examples():
    assert len(_examples()) == 4


def test_a_paper_kernel_in_your_svgp():
    ns = _run(0)
    assert ns["losses"][-1] < ns["losses"][0]  # the ELBO rises from the first steps
    assert 0.0 <= ns["accuracy"] <= 1.0


def test_swag_from_model_fit():
    ns = _run(1)
    weights = ns["collect"].swag.num_parameters
    assert tuple(ns["draws"].shape) == (3, weights)
    # float32 moments, some weights never moved: log densities of a few hundred nats, not rounding noise
    assert np.all(np.abs(ns["log_density"].numpy()) < 1e5)


def test_the_deep_weight_prior_bound():
    ns = _run(2)
    bound, tighter = ns["bound"].numpy(), ns["tighter"].numpy()
    assert bound.shape == tighter.shape == (1, 32)
    assert np.all(np.isfinite(bound))
    assert np.mean(tighter) >= np.mean(bound)  # the importance-weighted estimate is the tighter one


def test_the_empirical_ntk_kernel():
    ns = _run(3)
    mean = ns["mean"].numpy()
    assert mean.shape == (30, 1)
    assert np.sqrt(np.mean((mean - ns["Y"]) ** 2)) < 0.2  # the GP fits sin(2x)
