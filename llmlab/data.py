"""Synthetic data sets made by code, so that lectures, assignments and tests run offline.

House prices (module 01): every house has three features — its floor area in m², its number of
bedrooms and whether it has a balcony — and a price that follows a known linear rule plus
Gaussian noise::

    price = HOUSE_TRUE_BIAS + HOUSE_TRUE_WEIGHTS · (area_m2, bedrooms, has_balcony) + noise
    noise ~ Normal(0, HOUSE_NOISE_STD²)

Prices are in thousands of a currency unit. Because the rule is known, a fitted model can be
compared with the truth, and the best mean squared error any model can reach on fresh data is
the noise variance, ``HOUSE_NOISE_STD ** 2``.
"""

from __future__ import annotations

import numpy as np

#: Column names of the feature matrix returned by `make_house_prices`, in order.
HOUSE_FEATURE_NAMES: tuple[str, str, str] = ("area_m2", "bedrooms", "has_balcony")
#: True price change (in thousands) per m², per bedroom, and for having a balcony.
HOUSE_TRUE_WEIGHTS: tuple[float, float, float] = (3.0, 12.0, 20.0)
#: True base price (in thousands) of the rule, the intercept.
HOUSE_TRUE_BIAS: float = 50.0
#: Standard deviation (in thousands) of the Gaussian noise added to every price.
HOUSE_NOISE_STD: float = 25.0

#: Floor areas are drawn uniformly from this range (m²) and rounded to whole square metres.
HOUSE_AREA_RANGE: tuple[float, float] = (35.0, 180.0)
#: Bedroom counts are clipped to this range.
HOUSE_BEDROOM_RANGE: tuple[int, int] = (1, 5)
#: Fraction of houses that have a balcony (on average).
HOUSE_BALCONY_RATE: float = 0.4


def make_house_prices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw `n` synthetic houses and their prices.

    Bedrooms grow with the area (about one per 35 m², give or take one), so the two features
    are correlated but not collinear; the balcony is independent of both.

    Args:
        n: number of houses (rows), ``n >= 0``.
        rng: the only source of randomness; the same seed gives the same data.

    Returns:
        ``(X, y, feature_names)``: ``X`` is a float64 array of shape ``(n, 3)`` with the columns
        named in ``feature_names`` (``HOUSE_FEATURE_NAMES`` as a list); ``y`` is a float64 array
        of shape ``(n,)`` with the prices in thousands.

    Raises:
        TypeError: `n` is not an integer or `rng` is not a ``numpy.random.Generator``.
        ValueError: `n` is negative.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an integer, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator, e.g. np.random.default_rng(0)")

    area = np.round(rng.uniform(*HOUSE_AREA_RANGE, size=n))
    bedrooms = np.clip(np.round(area / 35.0 + rng.normal(0.0, 0.6, size=n)), *HOUSE_BEDROOM_RANGE)
    has_balcony = (rng.random(n) < HOUSE_BALCONY_RATE).astype(np.float64)
    X = np.column_stack([area, bedrooms, has_balcony]).astype(np.float64)
    noise = rng.normal(0.0, HOUSE_NOISE_STD, size=n)
    y = HOUSE_TRUE_BIAS + X @ np.asarray(HOUSE_TRUE_WEIGHTS) + noise
    return X, y, list(HOUSE_FEATURE_NAMES)
