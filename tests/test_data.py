"""Unit tests of llmlab.data: the synthetic house-price set used by module 01."""

import numpy as np
import pytest

from llmlab.data import (
    HOUSE_AREA_RANGE,
    HOUSE_BEDROOM_RANGE,
    HOUSE_FEATURE_NAMES,
    HOUSE_NOISE_STD,
    HOUSE_TRUE_BIAS,
    HOUSE_TRUE_WEIGHTS,
    make_house_prices,
)


def test_shapes_dtypes_and_names():
    X, y, names = make_house_prices(50, np.random.default_rng(0))
    assert isinstance(X, np.ndarray) and isinstance(y, np.ndarray)
    assert X.shape == (50, 3)
    assert y.shape == (50,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert names == list(HOUSE_FEATURE_NAMES) == ["area_m2", "bedrooms", "has_balcony"]


def test_feature_values_are_plausible():
    X, y, _ = make_house_prices(2000, np.random.default_rng(1))
    area, bedrooms, balcony = X.T
    assert area.min() >= HOUSE_AREA_RANGE[0] and area.max() <= HOUSE_AREA_RANGE[1]
    np.testing.assert_array_equal(area, np.round(area))
    np.testing.assert_array_equal(bedrooms, np.round(bedrooms))
    assert bedrooms.min() >= HOUSE_BEDROOM_RANGE[0] and bedrooms.max() <= HOUSE_BEDROOM_RANGE[1]
    assert set(np.unique(balcony)) == {0.0, 1.0}
    # bedrooms follow the area but are not a copy of it
    assert 0.5 < np.corrcoef(area, bedrooms)[0, 1] < 0.99
    assert np.all(y > 0)


def test_same_seed_same_data_other_seed_other_data():
    first = make_house_prices(30, np.random.default_rng(7))
    again = make_house_prices(30, np.random.default_rng(7))
    other = make_house_prices(30, np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_randomness_only_through_rng():
    np.random.seed(0)
    first = make_house_prices(10, np.random.default_rng(3))
    np.random.seed(1)
    second = make_house_prices(10, np.random.default_rng(3))
    np.testing.assert_array_equal(first[1], second[1])


def test_least_squares_recovers_the_true_rule():
    X, y, _ = make_house_prices(20_000, np.random.default_rng(2))
    A = np.column_stack([X, np.ones(len(X))])
    theta, *_ = np.linalg.lstsq(A, y, rcond=None)
    # tolerances are about five standard errors of each estimate at this sample size
    assert np.all(np.abs(theta[:3] - np.asarray(HOUSE_TRUE_WEIGHTS)) < [0.05, 1.5, 2.0])
    assert abs(theta[3] - HOUSE_TRUE_BIAS) < 3.0
    residual_std = np.std(y - A @ theta)
    assert abs(residual_std - HOUSE_NOISE_STD) < 0.05 * HOUSE_NOISE_STD


def test_zero_rows():
    X, y, names = make_house_prices(0, np.random.default_rng(0))
    assert X.shape == (0, 3) and y.shape == (0,) and len(names) == 3


@pytest.mark.parametrize("n", [-1, 2.5, True, "10"])
def test_bad_n_is_rejected(n):
    with pytest.raises((TypeError, ValueError)):
        make_house_prices(n, np.random.default_rng(0))


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError):
        make_house_prices(5, 0)
