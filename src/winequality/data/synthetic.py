"""Synthetic wines that look like the UCI data: one Gaussian copula per wine type.

The generator knows the real data only through summary statistics embedded below (computed once
with :func:`summarise` and printed with :func:`render_statistics`): per wine type its share of the
data, a quantile table per measurement, the distribution of ``quality`` and the correlation matrix
of the normal scores of all twelve columns. Drawing correlated normals, mapping them through the
normal CDF and then through the quantile tables reproduces the marginals (spikes such as the many
zero ``citric_acid`` values included), the rank correlations between measurements and, because
``quality`` is one of the copula's columns, its relation to the measurements.

Free SO2 is modelled as its share of total SO2, so a generated wine never has more free than total
sulfur dioxide. Values are rounded to the precision of the published files and written in the UCI
layout, so generated data goes through exactly the same ingestion path as the real files.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from winequality.contract import schema
from winequality.data.sources import UCI_FILES
from winequality.files import write_text

N_QUANTILES: Final = 101
"""Points of each quantile table (every percentile, minimum and maximum included)."""
PROBABILITIES: Final = np.linspace(0.0, 1.0, N_QUANTILES)

# Digits after the decimal point in the published files (the most common precision per column).
DECIMALS: Final[Mapping[str, int]] = {
    "fixed_acidity": 1,
    "volatile_acidity": 3,
    "citric_acid": 2,
    "residual_sugar": 2,
    "chlorides": 3,
    "free_sulfur_dioxide": 0,
    "total_sulfur_dioxide": 0,
    "density": 5,
    "ph": 2,
    "sulphates": 2,
    "alcohol": 1,
}

FREE_SO2_SHARE: Final = "free_sulfur_dioxide_share"
"""Copula column standing in for free SO2: free / total SO2, in (0, 1]."""
COPULA_COLUMNS: Final[tuple[str, ...]] = (
    *(FREE_SO2_SHARE if n == "free_sulfur_dioxide" else n for n in schema.FEATURE_NAMES),
    schema.TARGET,
)


@dataclass(frozen=True, slots=True)
class TypeStatistics:
    """What the generator knows about one wine type."""

    share: float
    """Fraction of all wines that are of this type."""
    quantiles: Mapping[str, tuple[float, ...]]
    """Per copula column except quality: values at :data:`PROBABILITIES`."""
    quality_levels: tuple[int, ...]
    quality_probabilities: tuple[float, ...]
    correlation: tuple[tuple[float, ...], ...]
    """Correlation of the normal scores, in :data:`COPULA_COLUMNS` order."""


def _normal_scores(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Average ranks keep tied values (integer SO2, quality) on one score.
    ranks = rankdata(values, method="average")
    scores: npt.NDArray[np.float64] = ndtri(ranks / (len(values) + 1))
    return scores


def _tie_attenuation(probabilities: npt.NDArray[np.float64]) -> float:
    """corr(Z, normal score of Z cut into levels with these probabilities), Z standard normal.

    Cutting a latent normal into a few ordered levels shrinks its correlations by this factor;
    dividing the observed correlations of ``quality`` by it recovers the latent ones the copula
    needs, so that the generated (cut) quality correlates with the measurements as the real one.
    """
    cdf = np.clip(np.cumsum(probabilities), 0.0, 1.0)
    lower = np.concatenate([[0.0], cdf[:-1]])
    scores = ndtri((lower + cdf) / 2)
    density = np.exp(-(ndtri(np.concatenate([[0.0], cdf])) ** 2) / 2) / math.sqrt(2 * math.pi)
    covariance = float(np.sum(scores * (density[:-1] - density[1:])))
    mean = float(np.sum(probabilities * scores))
    sd = math.sqrt(float(np.sum(probabilities * scores**2)) - mean**2)
    return covariance / sd


def _copula_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.loc[:, [*schema.FEATURE_NAMES, schema.TARGET]].astype("float64")
    out[FREE_SO2_SHARE] = out["free_sulfur_dioxide"] / out["total_sulfur_dioxide"]
    return out.loc[:, list(COPULA_COLUMNS)]


def summarise(frame: pd.DataFrame) -> dict[schema.WineType, TypeStatistics]:
    """The generator's statistics from a frame with ``schema.DATA_COLUMNS`` (both wine types)."""
    stats: dict[schema.WineType, TypeStatistics] = {}
    for wine_type in schema.WINE_TYPES:
        part = _copula_frame(frame.loc[frame[schema.WINE_TYPE] == wine_type])
        quantiles = {
            c: tuple(float(v) for v in np.quantile(part[c].to_numpy(), PROBABILITIES))
            for c in COPULA_COLUMNS
            if c != schema.TARGET
        }
        counts = part[schema.TARGET].astype("int64").value_counts().sort_index()
        scores = np.column_stack([_normal_scores(part[c].to_numpy()) for c in COPULA_COLUMNS])
        corr = np.atleast_2d(np.corrcoef(scores, rowvar=False))
        probabilities = counts.to_numpy() / counts.sum()
        q = COPULA_COLUMNS.index(schema.TARGET)
        factor = _tie_attenuation(probabilities)
        corr[q, :] /= factor
        corr[:, q] /= factor
        corr[q, q] = 1.0
        stats[wine_type] = TypeStatistics(
            share=len(part) / len(frame),
            quantiles=quantiles,
            quality_levels=tuple(int(q) for q in counts.index),
            quality_probabilities=tuple(float(p) for p in probabilities),
            correlation=tuple(tuple(float(v) for v in row) for row in corr),
        )
    return stats


def _wrap(tokens: list[str], indent: str = "    ", width: int = 96) -> list[str]:
    lines: list[str] = []
    line = indent
    for token in tokens:
        if len(line) + len(token) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += token + " "
    if line.strip():
        lines.append(line.rstrip())
    return lines


def render_statistics(stats: Mapping[schema.WineType, TypeStatistics]) -> str:
    """The text block embedded as :data:`_STATISTICS` (whitespace-separated, wrapped)."""
    lines: list[str] = []
    for wine_type, s in stats.items():
        lines.append(f"[{wine_type}]")
        lines.append(f"share: {s.share:.6f}")
        lines.append("quality_levels: " + " ".join(str(q) for q in s.quality_levels))
        lines.append("quality_probabilities:")
        lines.extend(_wrap([f"{p:.6f}" for p in s.quality_probabilities]))
        for column, values in s.quantiles.items():
            lines.append(f"{column}:")
            lines.extend(_wrap([f"{v:.6g}" for v in values]))
        lines.append("correlation:")
        for row in s.correlation:
            lines.extend(_wrap([f"{v:.4f}" for v in row]))
    return "\n".join(lines) + "\n"


def parse_statistics(text: str) -> dict[schema.WineType, TypeStatistics]:
    """Inverse of :func:`render_statistics`."""
    blocks: dict[str, dict[str, list[str]]] = {}
    block: dict[str, list[str]] = {}
    key = ""
    for token in text.split():
        if token.startswith("[") and token.endswith("]"):
            block = blocks.setdefault(token[1:-1], {})
        elif token.endswith(":"):
            key = token[:-1]
            block[key] = []
        else:
            block[key].append(token)
    stats: dict[schema.WineType, TypeStatistics] = {}
    n = len(COPULA_COLUMNS)
    for wine_type in schema.WINE_TYPES:
        b = blocks[wine_type]
        flat = [float(v) for v in b["correlation"]]
        stats[wine_type] = TypeStatistics(
            share=float(b["share"][0]),
            quantiles={
                c: tuple(float(v) for v in b[c]) for c in COPULA_COLUMNS if c != schema.TARGET
            },
            quality_levels=tuple(int(v) for v in b["quality_levels"]),
            quality_probabilities=tuple(float(v) for v in b["quality_probabilities"]),
            correlation=tuple(tuple(flat[i * n : (i + 1) * n]) for i in range(n)),
        )
    return stats


@cache
def embedded_statistics() -> dict[schema.WineType, TypeStatistics]:
    """The statistics of the published UCI files, parsed from the block at the end of the module."""
    return parse_statistics(_STATISTICS)


def _cholesky(correlation: tuple[tuple[float, ...], ...]) -> npt.NDArray[np.float64]:
    corr = np.asarray(correlation, dtype=np.float64)
    # Rounded coefficients can leave the matrix a hair short of positive definite; clip the
    # eigenvalues and rescale to a unit diagonal rather than fail.
    values, vectors = np.linalg.eigh((corr + corr.T) / 2)
    fixed = vectors @ np.diag(np.clip(values, 1e-6, None)) @ vectors.T
    d = np.sqrt(np.diag(fixed))
    return np.linalg.cholesky(fixed / np.outer(d, d))


def _sample_type(
    stats: TypeStatistics, rows: int, rng: np.random.Generator
) -> dict[str, npt.NDArray[np.float64]]:
    z = rng.standard_normal((rows, len(COPULA_COLUMNS))) @ _cholesky(stats.correlation).T
    u = ndtr(z)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for i, column in enumerate(COPULA_COLUMNS):
        if column == schema.TARGET:
            cdf = np.cumsum(stats.quality_probabilities)
            index = np.minimum(np.searchsorted(cdf, u[:, i]), len(cdf) - 1)
            out[column] = np.asarray(stats.quality_levels, dtype=np.float64)[index]
        else:
            out[column] = np.interp(u[:, i], PROBABILITIES, stats.quantiles[column])
    total = np.round(out["total_sulfur_dioxide"], DECIMALS["total_sulfur_dioxide"])
    out["total_sulfur_dioxide"] = total
    free = np.round(out.pop(FREE_SO2_SHARE) * total, DECIMALS["free_sulfur_dioxide"])
    out["free_sulfur_dioxide"] = np.clip(free, 1.0, total)
    for feature in schema.FEATURES:
        values = np.round(out[feature.name], DECIMALS[feature.name])
        out[feature.name] = np.clip(values, feature.minimum, feature.maximum)
    return out


def generate(
    rows: int,
    seed: int,
    stats: Mapping[schema.WineType, TypeStatistics] | None = None,
) -> pd.DataFrame:
    """``rows`` synthetic wines with ``schema.DATA_COLUMNS``, red first; same seed, same rows.

    Both wine types are always present, in the proportion of the real data.
    """
    if rows < 2:
        raise ValueError(f"rows must be at least 2 (one wine of each type), got {rows}")
    stats = embedded_statistics() if stats is None else stats
    rng = np.random.default_rng(seed)
    n_red = min(max(round(rows * stats["red"].share), 1), rows - 1)
    counts: dict[schema.WineType, int] = {"red": n_red, "white": rows - n_red}
    frames = []
    for wine_type in schema.WINE_TYPES:
        sample = _sample_type(stats[wine_type], counts[wine_type], rng)
        part = pd.DataFrame({name: sample[name] for name in schema.FEATURE_NAMES})
        part[schema.WINE_TYPE] = wine_type
        part[schema.TARGET] = sample[schema.TARGET].astype("int64")
        frames.append(part)
    return pd.concat(frames, ignore_index=True).loc[:, list(schema.DATA_COLUMNS)]


def _format(value: float, decimals: int) -> str:
    # The UCI files write 7 rather than 7.0 and 0.7 rather than 0.700.
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_uci_csv(frame: pd.DataFrame) -> str:
    """One wine type's rows in the UCI layout: quoted header, ``;`` separators, UCI names."""
    buffer = io.StringIO()
    header = [schema.FEATURES_BY_NAME[n].uci_name for n in schema.FEATURE_NAMES]
    buffer.write(";".join(f'"{name}"' for name in [*header, schema.TARGET]) + "\n")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n", quoting=csv.QUOTE_NONE)
    columns = [
        [_format(float(v), DECIMALS[n]) for v in frame[n].to_numpy()] for n in schema.FEATURE_NAMES
    ]
    quality = [str(int(q)) for q in frame[schema.TARGET].to_numpy()]
    writer.writerows(zip(*columns, quality, strict=True))
    return buffer.getvalue()


def write_uci_files(frame: pd.DataFrame, out_dir: Path) -> dict[schema.WineType, Path]:
    """Both UCI-layout files (one per wine type) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[schema.WineType, Path] = {}
    for wine_type in schema.WINE_TYPES:
        path = out_dir / UCI_FILES[wine_type]
        part = frame.loc[frame[schema.WINE_TYPE] == wine_type]
        write_text(path, to_uci_csv(part))
        paths[wine_type] = path
    return paths


# Summary statistics of the published UCI files (1,599 red, 4,898 white wines), duplicates
# included, as printed by render_statistics(summarise(read_uci_dir(folder))).
_STATISTICS: Final = """
[red]
share: 0.246114
quality_levels: 3 4 5 6 7 8
quality_probabilities:
    0.006254 0.033146 0.425891 0.398999 0.124453 0.011257
fixed_acidity:
    4.6 5.2 5.6 5.8 6 6.1 6.2 6.3 6.4 6.4 6.5 6.6 6.6 6.7 6.7 6.8 6.8 6.8 6.9 6.9 7 7 7 7.1 7.1
    7.1 7.1 7.2 7.2 7.2 7.2 7.3 7.3 7.3 7.4 7.4 7.5 7.5 7.5 7.5 7.6 7.6 7.616 7.7 7.7 7.7 7.8
    7.8 7.8 7.9 7.9 7.9 8 8 8.1 8.1 8.2 8.2 8.2 8.3 8.3 8.4 8.4 8.5 8.6 8.6 8.7 8.8 8.8 8.9 8.9
    9 9 9.1 9.1 9.2 9.3 9.4 9.5 9.6 9.7 9.8 9.9 10 10 10.2 10.228 10.4 10.424 10.6 10.7 10.9
    11.1 11.4 11.512 11.8 12 12.4 12.7 13.3 15.9
volatile_acidity:
    0.12 0.19 0.2296 0.24 0.26 0.27 0.28 0.29 0.3 0.305 0.31 0.315 0.32 0.33 0.34 0.34 0.35
    0.3566 0.36 0.36 0.37 0.3758 0.38 0.38 0.39 0.39 0.4 0.4 0.41 0.41 0.415 0.42 0.4236 0.43
    0.43 0.44 0.44 0.45 0.46 0.46 0.47 0.48 0.48 0.49 0.49 0.5 0.5 0.5 0.51 0.52 0.52 0.52 0.53
    0.54 0.54 0.545 0.55 0.56 0.56 0.57 0.57 0.58 0.58 0.585 0.59 0.59 0.6 0.6 0.6 0.61 0.61
    0.62 0.62 0.63 0.63 0.64 0.64 0.645 0.65 0.66 0.66 0.67 0.675 0.685 0.69 0.6915 0.7 0.715
    0.725 0.735 0.745 0.7609 0.78 0.785 0.82 0.84 0.87 0.9 0.96 1.02 1.58
citric_acid:
    0 0 0 0 0 0 0 0 0 0.01 0.01 0.02 0.02 0.02 0.03 0.03 0.04 0.04 0.05 0.06 0.07 0.07 0.08
    0.08 0.09 0.09 0.1 0.1 0.11 0.12 0.124 0.13 0.14 0.15 0.16 0.17 0.18 0.19 0.2 0.2 0.21 0.21
    0.22 0.22 0.23 0.24 0.24 0.24 0.25 0.25 0.26 0.26 0.26 0.27 0.28 0.29 0.3 0.3 0.31 0.31
    0.32 0.32 0.33 0.33 0.34 0.35 0.36 0.37 0.38 0.39 0.39 0.4 0.4 0.41 0.42 0.42 0.43 0.44
    0.45 0.46 0.46 0.47 0.48 0.49 0.49 0.49 0.49 0.5 0.5 0.52 0.522 0.54 0.55 0.57 0.58 0.6
    0.64 0.66 0.68 0.7002 1
residual_sugar:
    0.9 1.4 1.4 1.4 1.5 1.59 1.6 1.6 1.6 1.7 1.7 1.7 1.7 1.7 1.8 1.8 1.8 1.8 1.8 1.8 1.8 1.8
    1.9 1.9 1.9 1.9 1.9 1.9 1.9 1.942 2 2 2 2 2 2 2 2 2 2.1 2.1 2.1 2.1 2.1 2.1 2.1 2.1 2.153
    2.2 2.2 2.2 2.2 2.2 2.2 2.2 2.2 2.3 2.3 2.3 2.3 2.3 2.3 2.3 2.4 2.4 2.4 2.4 2.4 2.5 2.5 2.5
    2.5 2.5 2.6 2.6 2.6 2.6 2.6 2.7 2.7 2.7 2.8 2.8 2.8 2.9 2.965 3 3.126 3.3 3.4 3.6 3.8 4 4.3
    4.6 5.1 5.6 6.006 6.604 8.306 15.5
chlorides:
    0.012 0.04298 0.047 0.049 0.052 0.054 0.055 0.057 0.058 0.059 0.06 0.06178 0.062 0.063
    0.064 0.064 0.065 0.066 0.066 0.067 0.067 0.068 0.068 0.069 0.07 0.07 0.071 0.071 0.071
    0.072 0.072 0.073 0.073 0.074 0.074 0.074 0.075 0.075 0.075 0.076 0.076 0.076 0.077 0.077
    0.077 0.078 0.078 0.078 0.079 0.079 0.079 0.08 0.08 0.08 0.08 0.081 0.081 0.081 0.082 0.082
    0.082 0.083 0.083 0.084 0.084 0.084 0.085 0.086 0.086 0.087 0.087 0.088 0.088 0.089 0.09
    0.09 0.091 0.092 0.093 0.093 0.094 0.095 0.096 0.097 0.09732 0.099 0.1 0.10226 0.104 0.106
    0.109 0.111 0.114 0.118 0.122 0.1261 0.15332 0.17412 0.226 0.36016 0.611
free_sulfur_dioxide_share:
    0.0227273 0.104834 0.12766 0.136364 0.142857 0.154311 0.16129 0.169231 0.176471 0.181818
    0.186047 0.192834 0.2 0.206897 0.212766 0.21851 0.224938 0.228466 0.234043 0.238095
    0.241607 0.245221 0.25 0.25 0.253968 0.259259 0.263158 0.266667 0.272727 0.277778 0.283951
    0.287281 0.295216 0.3 0.302724 0.310005 0.3125 0.317647 0.321527 0.326087 0.333333 0.333333
    0.333846 0.342857 0.347826 0.353529 0.357143 0.362069 0.363636 0.369881 0.375 0.375 0.38234
    0.384615 0.388837 0.394324 0.4 0.4 0.405063 0.408163 0.413793 0.416667 0.421053 0.428571
    0.428571 0.433333 0.4375 0.442778 0.447949 0.452257 0.454545 0.461538 0.466667 0.473684
    0.478732 0.484848 0.5 0.5 0.5 0.5 0.511696 0.521424 0.529412 0.533333 0.538462 0.545455
    0.552797 0.566667 0.576923 0.583333 0.6 0.6 0.6133 0.631579 0.64725 0.666667 0.688419
    0.712446 0.736842 0.75563 0.857143
total_sulfur_dioxide:
    6 8 9 10 11 11 12 12 13 13 14 14 15 15 16 17 17 18 18 19 19 20 20 21 21 22 23 23 24 24 24
    25 26 26 27 27 28 28 29 29 30 31 31 32 33 34 35 35 36.04 37 38 38 39 40 41 42 42 43 44 45
    45.8 46 47 48 49 49 51 52 53 54 55 56 58 60 60.52 62 64 65 66 68 69 71.38 73 76 79 82 85 87
    88 91 93.2 96 100 104 108.12 112.1 119.08 127 135 145 289
density:
    0.99007 0.99182 0.99258 0.993219 0.99346 0.993598 0.99378 0.993969 0.99418 0.99438 0.994556
    0.99467 0.994755 0.994837 0.994917 0.995 0.99508 0.99516 0.9952 0.995272 0.99534 0.9954
    0.99546 0.9955 0.995545 0.9956 0.995655 0.99572 0.99576 0.9958 0.99586 0.9959 0.995967
    0.996 0.9961 0.99613 0.996163 0.9962 0.99622 0.99628 0.9963 0.996352 0.9964 0.9964 0.99648
    0.99652 0.99656 0.9966 0.99665 0.9967 0.99675 0.9968 0.9968 0.99683 0.99689 0.9969 0.996979
    0.997 0.997037 0.9971 0.997156 0.9972 0.9972 0.99724 0.9973 0.99734 0.99738 0.9974 0.99745
    0.99748 0.9976 0.9976 0.997627 0.99774 0.9978 0.997835 0.9979 0.998 0.998 0.998088 0.998174
    0.9982 0.99828 0.9984 0.9984 0.9986 0.998611 0.998785 0.9988 0.999 0.99914 0.999309 0.9994
    0.9996 0.9997 1 1.00012 1.00031 1.0008 1.00151 1.00369
ph:
    2.74 2.93 3 3.0294 3.0492 3.06 3.08 3.09 3.1 3.12 3.12 3.1378 3.14 3.15 3.15 3.16 3.16 3.17
    3.17 3.18 3.18 3.19 3.2 3.2 3.2 3.21 3.21 3.22 3.22 3.23 3.23 3.24 3.24 3.25 3.25 3.26 3.26
    3.26 3.27 3.27 3.28 3.28 3.28 3.29 3.29 3.29 3.3 3.3 3.3 3.31 3.31 3.31 3.32 3.32 3.32 3.33
    3.33 3.34 3.34 3.34 3.35 3.35 3.36 3.36 3.36 3.36 3.37 3.37 3.38 3.38 3.38 3.39 3.39 3.39
    3.4 3.4 3.41 3.41 3.42 3.42 3.424 3.43 3.44 3.45 3.45 3.46 3.47 3.48 3.4824 3.5 3.51 3.52
    3.53 3.54 3.55 3.57 3.58 3.6006 3.66 3.7002 4.01
sulphates:
    0.33 0.42 0.44 0.45 0.46 0.47 0.48 0.48 0.49 0.49 0.5 0.5 0.51 0.52 0.52 0.52 0.53 0.53
    0.53 0.54 0.54 0.54 0.54 0.54 0.55 0.55 0.55 0.56 0.56 0.56 0.564 0.57 0.57 0.57 0.58 0.58
    0.58 0.58 0.59 0.59 0.59 0.6 0.6 0.6 0.6 0.6 0.61 0.61 0.6104 0.62 0.62 0.62 0.63 0.63 0.63
    0.64 0.64 0.64 0.65 0.65 0.65 0.66 0.66 0.67 0.67 0.67 0.68 0.68 0.69 0.7 0.7 0.71 0.71
    0.72 0.72 0.73 0.74 0.74 0.75 0.76 0.76 0.77 0.78 0.78 0.79 0.8 0.81 0.82 0.8224 0.84 0.85
    0.86 0.87 0.89 0.91 0.93 0.9708 1.05 1.13 1.2604 2
alcohol:
    8.4 9 9 9.1 9.2 9.2 9.2 9.2 9.2 9.3 9.3 9.3 9.3 9.4 9.4 9.4 9.4 9.4 9.4 9.5 9.5 9.5 9.5 9.5
    9.5 9.5 9.5 9.5 9.6 9.6 9.6 9.6 9.7 9.7 9.7 9.8 9.8 9.8 9.8 9.8 9.9 9.9 9.9 10 10 10 10
    10.1 10.1 10.1 10.2 10.2 10.2 10.3 10.3 10.4 10.4 10.4 10.5 10.5 10.5 10.5 10.6 10.6 10.7
    10.7 10.8 10.8 10.9 10.9 10.9 11 11 11 11 11.1 11.1 11.2 11.2 11.3 11.3 11.4 11.4 11.5 11.5
    11.6 11.7 11.8 11.8 11.9 12 12 12.116 12.3 12.4 12.5 12.608 12.8 12.9 13.4 14.9
correlation:
    1.0000 -0.2524 0.6406 0.2168 0.2708 -0.1355 -0.0950 0.6648 -0.7179 0.1923 -0.1178 0.1144
    -0.2524 1.0000 -0.5462 0.0443 0.1558 -0.0845 0.0919 0.0355 0.2281 -0.3147 -0.1987 -0.4220
    0.6406 -0.5462 1.0000 0.1901 0.1492 -0.1762 0.0237 0.3632 -0.5524 0.3191 0.0612 0.2341
    0.2168 0.0443 0.1901 1.0000 0.2051 -0.1279 0.1598 0.4379 -0.0839 0.0431 0.0862 0.0350
    0.2708 0.1558 0.1492 0.2051 1.0000 -0.1809 0.1137 0.4358 -0.2644 0.0945 -0.3215 -0.2065
    -0.1355 -0.0845 -0.1762 -0.1279 -0.1809 1.0000 -0.3486 -0.2657 0.1924 0.0334 0.2487 0.2069
    -0.0950 0.0919 0.0237 0.1598 0.1137 -0.3486 1.0000 0.1192 -0.0257 0.0337 -0.2354 -0.1775
    0.6648 0.0355 0.3632 0.4379 0.4358 -0.2657 0.1192 1.0000 -0.3334 0.1753 -0.4791 -0.1876
    -0.7179 0.2281 -0.5524 -0.0839 -0.2644 0.1924 -0.0257 -0.3334 1.0000 -0.1064 0.2091 -0.0665
    0.1923 -0.3147 0.3191 0.0431 0.0945 0.0334 0.0337 0.1753 -0.1064 1.0000 0.1558 0.3719
    -0.1178 -0.1987 0.0612 0.0862 -0.3215 0.2487 -0.2354 -0.4791 0.2091 0.1558 1.0000 0.4778
    0.1144 -0.4220 0.2341 0.0350 -0.2065 0.2069 -0.1775 -0.1876 -0.0665 0.3719 0.4778 1.0000
[white]
share: 0.753886
quality_levels: 3 4 5 6 7 8 9
quality_probabilities:
    0.004083 0.033279 0.297468 0.448755 0.179665 0.035729 0.001021
fixed_acidity:
    3.8 5 5.2 5.4 5.6 5.6 5.7 5.7 5.8 5.8 5.9 5.9 6 6 6 6 6.1 6.1 6.1 6.2 6.2 6.2 6.2 6.3 6.3
    6.3 6.3 6.4 6.4 6.4 6.4 6.4 6.4 6.5 6.5 6.5 6.5 6.6 6.6 6.6 6.6 6.6 6.6 6.7 6.7 6.7 6.7 6.7
    6.8 6.8 6.8 6.8 6.8 6.8 6.9 6.9 6.9 6.9 6.9 7 7 7 7 7 7.1 7.1 7.1 7.1 7.2 7.2 7.2 7.2 7.3
    7.3 7.3 7.3 7.4 7.4 7.4 7.4 7.5 7.5 7.6 7.6 7.6 7.6 7.7 7.8 7.8 7.9 7.9 8 8.1 8.1 8.2 8.3
    8.4 8.6 8.9 9.2 14.2
volatile_acidity:
    0.08 0.12 0.13 0.14 0.15 0.15 0.16 0.16 0.16 0.17 0.17 0.17 0.18 0.18 0.18 0.18775 0.19
    0.19 0.19 0.2 0.2 0.2 0.2 0.21 0.21 0.21 0.21 0.22 0.22 0.22 0.22 0.22 0.23 0.23 0.23 0.23
    0.23 0.24 0.24 0.24 0.24 0.24 0.25 0.25 0.25 0.25 0.25 0.26 0.26 0.26 0.26 0.26 0.27 0.27
    0.27 0.27 0.28 0.28 0.28 0.28 0.28 0.28 0.29 0.29 0.29 0.3 0.3 0.3 0.3 0.31 0.31 0.31 0.32
    0.32 0.32 0.32 0.33 0.33 0.33 0.34 0.34 0.34 0.35 0.35 0.36 0.36 0.37 0.38 0.385 0.39 0.4
    0.41 0.42 0.43 0.44 0.46 0.48 0.51 0.56 0.63 1.1
citric_acid:
    0 0.05 0.1 0.14 0.16 0.17 0.18 0.1979 0.2 0.21 0.22 0.22 0.23 0.23 0.24 0.24 0.24 0.24 0.25
    0.25 0.25 0.26 0.26 0.26 0.26 0.27 0.27 0.27 0.27 0.28 0.28 0.28 0.28 0.28 0.28 0.29 0.29
    0.29 0.29 0.29 0.3 0.3 0.3 0.3 0.3 0.3 0.31 0.31 0.31 0.31 0.32 0.32 0.32 0.32 0.32 0.33
    0.33 0.33 0.33 0.34 0.34 0.34 0.34 0.34 0.35 0.35 0.36 0.36 0.36 0.36 0.37 0.37 0.37 0.38
    0.38 0.39 0.39 0.4 0.4 0.4 0.41 0.42 0.42 0.43 0.44 0.45 0.46 0.47 0.48 0.49 0.49 0.49 0.49
    0.5 0.51 0.54 0.57 0.61 0.67 0.74 1.66
residual_sugar:
    0.6 0.9 1 1 1.1 1.1 1.1 1.2 1.2 1.2 1.2 1.3 1.3 1.3 1.4 1.4 1.4 1.4 1.5 1.5 1.5 1.6 1.6 1.6
    1.7 1.7 1.8 1.8 1.9 1.9565 2 2.1 2.2 2.3 2.4 2.5 2.6 2.8 2.9 3.2 3.4 3.6 3.85 4.1 4.3 4.5
    4.6 4.8 4.9 5 5.2 5.4 5.644 5.8 6.038 6.2 6.4 6.5 6.7 6.85 7 7.2 7.4 7.5 7.7 7.8 7.9 8.1
    8.2 8.3 8.6 8.8 9 9.2905 9.639 9.9 10.172 10.4 10.6 10.863 11.2 11.5 11.8 12 12.3 12.5725
    12.8 13 13.3 13.7 14 14.3 14.55 14.9 15.4 15.7 16.4 17.2 17.8 18.8 65.8
chlorides:
    0.009 0.02 0.023 0.024 0.026 0.027 0.028 0.028 0.029 0.029 0.03 0.03 0.031 0.031 0.032
    0.032 0.033 0.033 0.033 0.034 0.034 0.034 0.035 0.035 0.035 0.036 0.036 0.036 0.036 0.037
    0.037 0.037 0.038 0.038 0.038 0.038 0.039 0.039 0.039 0.04 0.04 0.04 0.04 0.041 0.041 0.041
    0.042 0.042 0.042 0.043 0.043 0.043 0.044 0.044 0.044 0.044 0.045 0.045 0.045 0.045 0.046
    0.046 0.046 0.046 0.047 0.047 0.047 0.048 0.048 0.048 0.048 0.049 0.049 0.05 0.05 0.05 0.05
    0.051 0.051 0.052 0.052 0.053 0.053 0.053 0.054 0.054 0.055 0.056 0.056 0.057 0.058 0.059
    0.06 0.062 0.064 0.067 0.073 0.08509 0.117 0.16 0.346
free_sulfur_dioxide_share:
    0.023622 0.0588235 0.0746927 0.0873016 0.0983221 0.107143 0.114741 0.122098 0.128699
    0.133843 0.137931 0.142857 0.146341 0.150158 0.153846 0.158408 0.161878 0.165774 0.169231
    0.172414 0.176 0.179399 0.182253 0.184211 0.1875 0.190935 0.193121 0.19589 0.198198 0.20169
    0.204545 0.206897 0.209099 0.211538 0.213792 0.216216 0.218576 0.221509 0.224471 0.226656
    0.229 0.230769 0.234219 0.236842 0.239563 0.242424 0.244444 0.246253 0.249412 0.251309
    0.253677 0.255814 0.257697 0.259782 0.262158 0.264794 0.266667 0.26875 0.270968 0.272727
    0.275 0.278146 0.280225 0.282839 0.284884 0.287134 0.289855 0.292517 0.295997 0.298761
    0.301282 0.303922 0.306667 0.309645 0.313131 0.315789 0.318108 0.321112 0.323786 0.326412
    0.329545 0.333333 0.337662 0.341837 0.344444 0.348718 0.352941 0.358319 0.363311 0.368997
    0.377572 0.382477 0.390598 0.39697 0.40367 0.409968 0.421333 0.432692 0.456883 0.51414
    0.710526
total_sulfur_dioxide:
    9 50.97 62 68 72 75 78 80 83 85 87 89 91 93 94 96 97 98 99 101 102 103 104 106 107 108 110
    111 111 113 113 114 115 116 117 118 119 120 121 122 124 125 126 127 128 129 130 131 132 133
    134 135 137 138 139 140 142 143 144 146 147 148.17 150 150 152 153 155 156 157 158 160 161
    163 164 166 167 168.72 170 172 173 176 178 179 180 182 184 186 188 190 192 195 197 200 204
    209 212 216 222 229 241.03 440
density:
    0.98711 0.988779 0.989149 0.98936 0.9895 0.989638 0.9898 0.98999 0.990088 0.9902 0.990327
    0.99044 0.990586 0.99066 0.99076 0.99085 0.99096 0.99104 0.99114 0.9912 0.9913 0.9914
    0.99148 0.9916 0.99166 0.991723 0.9918 0.99185 0.99196 0.992 0.992091 0.99218 0.99226
    0.99238 0.9924 0.9925 0.9926 0.9927 0.992789 0.9928 0.9929 0.993 0.99307 0.99315 0.9932
    0.9933 0.9934 0.99347 0.9936 0.99366 0.99374 0.9938 0.9939 0.994 0.9941 0.9942 0.9943
    0.9944 0.9945 0.9946 0.9947 0.9948 0.9949 0.995 0.9951 0.9952 0.9953 0.9954 0.99543 0.9955
    0.9956 0.995697 0.9958 0.995848 0.99596 0.9961 0.996234 0.9964 0.99657 0.99665 0.9968
    0.99692 0.997095 0.9972 0.9974 0.99754 0.997694 0.9978 0.9979 0.998 0.99815 0.9983 0.9984
    0.9986 0.9987 0.999 0.99924 0.9996 0.9999 1.0003 1.03898
ph:
    2.72 2.88 2.9 2.93 2.94 2.96 2.96 2.98 2.99 3 3 3.01 3.02 3.03 3.03 3.04 3.04 3.05 3.05
    3.06 3.06 3.07 3.07 3.08 3.08 3.09 3.09 3.1 3.1 3.1 3.11 3.11 3.11 3.12 3.12 3.13 3.13 3.13
    3.14 3.14 3.14 3.15 3.15 3.15 3.16 3.16 3.16 3.17 3.17 3.17 3.18 3.18 3.18 3.19 3.19 3.19
    3.2 3.2 3.2 3.21 3.22 3.22 3.22 3.23 3.23 3.23 3.24 3.24 3.24 3.25 3.25 3.26 3.26 3.27 3.27
    3.28 3.29 3.29 3.3 3.3 3.31 3.31 3.32 3.33 3.34 3.34 3.35 3.36 3.36 3.37 3.38 3.39 3.41
    3.42 3.44 3.46 3.48 3.5 3.53 3.6 3.82
sulphates:
    0.22 0.29 0.31 0.32 0.33 0.34 0.34 0.35 0.35 0.36 0.36 0.37 0.37 0.37 0.38 0.38 0.38 0.38
    0.39 0.39 0.39 0.4 0.4 0.4 0.4 0.41 0.41 0.42 0.42 0.42 0.42 0.43 0.43 0.43 0.44 0.44 0.44
    0.44 0.44 0.45 0.45 0.45 0.4574 0.46 0.46 0.46 0.46 0.47 0.47 0.47 0.47 0.48 0.48 0.48 0.49
    0.49 0.49 0.49 0.5 0.5 0.5 0.5 0.5 0.51 0.51 0.51 0.52 0.52 0.52 0.53 0.53 0.53 0.54 0.54
    0.54 0.55 0.55 0.56 0.56 0.57 0.57 0.58 0.58 0.59 0.59 0.6 0.6 0.61 0.62 0.63 0.64 0.65
    0.66 0.68 0.69 0.71 0.7212 0.75 0.78 0.83 1.08
alcohol:
    8 8.7 8.7 8.8 8.8 8.9 8.9 9 9 9 9 9.1 9.1 9.1 9.2 9.2 9.2 9.2 9.3 9.3 9.4 9.4 9.4 9.4 9.4
    9.5 9.5 9.5 9.5 9.5 9.6 9.6 9.6 9.7 9.7 9.8 9.8 9.8 9.9 9.9 10 10 10 10.1 10.1 10.15 10.2
    10.2 10.3 10.3 10.4 10.4 10.4 10.5 10.5 10.5 10.6 10.6 10.6 10.7 10.7 10.8 10.8 10.9 10.9
    11 11 11 11 11.1 11.2 11.2 11.2 11.3 11.3 11.4 11.4 11.5 11.5 11.6 11.7 11.75 11.8 11.9 12
    12 12.1 12.2 12.2 12.3 12.4 12.4 12.5 12.6 12.6 12.7 12.8 12.9 13.1 13.4 14.2
correlation:
    1.0000 -0.0328 0.3170 0.0980 0.0902 -0.1315 0.1015 0.3002 -0.4362 -0.0183 -0.1276 -0.1107
    -0.0328 1.0000 -0.1710 0.1044 0.0132 -0.2047 0.1166 0.0020 -0.0450 -0.0350 0.0551 -0.2109
    0.3170 -0.1710 1.0000 0.0477 0.0493 0.0245 0.1017 0.1209 -0.1579 0.0756 -0.0586 0.0336
    0.0980 0.1044 0.0477 1.0000 0.2086 0.0504 0.4171 0.7488 -0.1634 0.0193 -0.4142 -0.0531
    0.0902 0.0132 0.0493 0.2086 1.0000 -0.0864 0.3514 0.4781 -0.0497 0.0932 -0.5324 -0.3135
    -0.1315 -0.2047 0.0245 0.0504 -0.0864 1.0000 -0.0103 -0.0684 0.0052 -0.0393 0.0449 0.2222
    0.1015 0.1166 0.1017 0.4171 0.3514 -0.0103 1.0000 0.5311 0.0100 0.1615 -0.4404 -0.1647
    0.3002 0.0020 0.1209 0.7488 0.4781 -0.0684 0.5311 1.0000 -0.0974 0.1117 -0.8084 -0.3398
    -0.4362 -0.0450 -0.1579 -0.1634 -0.0497 0.0052 0.0100 -0.0974 1.0000 0.1592 0.1509 0.1049
    -0.0183 -0.0350 0.0756 0.0193 0.0932 -0.0393 0.1615 0.1117 0.1592 1.0000 -0.0393 0.0358
    -0.1276 0.0551 -0.0586 -0.4142 -0.5324 0.0449 -0.4404 -0.8084 0.1509 -0.0393 1.0000 0.4300
    -0.1107 -0.2109 0.0336 -0.0531 -0.3135 0.2222 -0.1647 -0.3398 0.1049 0.0358 0.4300 1.0000
"""
