"""The contract shared by every component: feature names, units, physical ranges, tensor names.

Data validation, request models, preprocessing (in process and inside Triton), drift detection and
the Triton configs all read these definitions; nothing else in the code base spells a feature name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal


@dataclass(frozen=True, slots=True)
class Feature:
    """One physicochemical measurement of a wine."""

    name: str
    """snake_case name used everywhere after ingestion."""
    uci_name: str
    """Column name in the published UCI CSV files (accepted on ingestion only)."""
    unit: str
    minimum: float
    """Smallest physically valid value (inclusive)."""
    maximum: float
    """Largest physically valid value (inclusive)."""
    description: str
    example: float
    """A typical value, used in API examples and docs."""


# Ranges are physical limits, not the span of the training data: a value outside them is a
# measurement or unit error and is rejected, while an unusual but possible wine is accepted.
FEATURES: Final[tuple[Feature, ...]] = (
    Feature(
        "fixed_acidity",
        "fixed acidity",
        "g(tartaric acid)/dm3",
        0.0,
        20.0,
        "Non-volatile acids (mostly tartaric).",
        7.4,
    ),
    Feature(
        "volatile_acidity",
        "volatile acidity",
        "g(acetic acid)/dm3",
        0.0,
        2.0,
        "Acetic acid; too much tastes of vinegar.",
        0.7,
    ),
    Feature("citric_acid", "citric acid", "g/dm3", 0.0, 2.0, "Adds freshness.", 0.0),
    Feature(
        "residual_sugar",
        "residual sugar",
        "g/dm3",
        0.0,
        100.0,
        "Sugar left after fermentation.",
        1.9,
    ),
    Feature("chlorides", "chlorides", "g(sodium chloride)/dm3", 0.0, 1.0, "Salt content.", 0.076),
    Feature(
        "free_sulfur_dioxide",
        "free sulfur dioxide",
        "mg/dm3",
        0.0,
        300.0,
        "Free SO2; prevents microbial growth and oxidation.",
        11.0,
    ),
    Feature(
        "total_sulfur_dioxide",
        "total sulfur dioxide",
        "mg/dm3",
        0.0,
        500.0,
        "Free plus bound SO2.",
        34.0,
    ),
    Feature(
        "density",
        "density",
        "g/cm3",
        0.9,
        1.1,
        "Close to water, lowered by alcohol, raised by sugar.",
        0.9978,
    ),
    Feature("ph", "pH", "pH", 0.0, 14.0, "Acidity on the pH scale.", 3.51),
    Feature(
        "sulphates",
        "sulphates",
        "g(potassium sulphate)/dm3",
        0.0,
        3.0,
        "Wine additive contributing to SO2 levels.",
        0.56,
    ),
    Feature("alcohol", "alcohol", "% vol", 0.0, 25.0, "Alcohol by volume.", 9.4),
)

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: Final[dict[str, Feature]] = {f.name: f for f in FEATURES}
UCI_TO_SNAKE: Final[dict[str, str]] = {f.uci_name: f.name for f in FEATURES} | {
    "quality": "quality"
}

WineType = Literal["red", "white"]
WINE_TYPE: Final = "wine_type"
WINE_TYPES: Final[tuple[WineType, ...]] = ("red", "white")

TARGET: Final = "quality"
QUALITY_MIN: Final = 0
QUALITY_MAX: Final = 10
QUALITY_CLASSES: Final = range(QUALITY_MIN, QUALITY_MAX + 1)
"""The classes a score on the scale rounds to."""

# Column order of the numeric matrix the model consumes: the 11 measurements, then wine_type
# encoded as 1.0 for white and 0.0 for red. The ONNX model, the Triton preprocess step and the
# in-process predictor all build exactly this matrix (see contract/features.py).
IS_WHITE: Final = "is_white"
MODEL_COLUMNS: Final[tuple[str, ...]] = (*FEATURE_NAMES, IS_WHITE)
N_MODEL_COLUMNS: Final = len(MODEL_COLUMNS)

# Columns of a validated data set / reference sample, in order.
DATA_COLUMNS: Final[tuple[str, ...]] = (*FEATURE_NAMES, WINE_TYPE, TARGET)

# Tensor names of the ONNX model and of the Triton ensemble (Open Inference Protocol V2).
MODEL_NAME: Final = "wine-quality"
ONNX_INPUT: Final = "input"
ONNX_OUTPUT: Final = "variable"
OUTPUT_QUALITY: Final = "quality"
OUTPUT_CLASS: Final = "quality_class"
OUTPUTS: Final = (OUTPUT_QUALITY, OUTPUT_CLASS)
"""The served outputs, in the order a V2 request that names none gets them."""
