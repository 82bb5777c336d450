"""Ingestion: UCI files, a folder, one CSV, a URL or the generator -> raw rows with provenance.

Ingestion checks the *layout* of the input (header, separators, number of fields per line) and
fails with the file, line and column at fault. It keeps every cell as the text it read, adds
``wine_type`` and the provenance columns ``source_file``/``source_line``, and leaves judging the
*values* (numbers, ranges, wine types) to validation, which can then name the line a user has to
fix. The original UCI column names are accepted here only; everything downstream is snake_case.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from winequality.contract import schema
from winequality.data.sources import UCI_FILES, UCI_URL
from winequality.files import atomic_path, write_bytes, write_json

SOURCE_FILE: Final = "source_file"
SOURCE_LINE: Final = "source_line"
RAW_COLUMNS: Final[tuple[str, ...]] = (*schema.DATA_COLUMNS, SOURCE_FILE, SOURCE_LINE)
"""Columns of ``data/raw/wines.csv``: the data columns as read (text) and each row's origin."""

SourceKind = Literal["uci", "path", "url", "synthetic"]
Progress = Callable[[int, int | None], None]
"""Download progress callback: (bytes so far, total bytes or None)."""

_NAME_TO_COLUMN: Final[Mapping[str, str]] = {
    **schema.UCI_TO_SNAKE,
    **{c: c for c in schema.DATA_COLUMNS},
}


class IngestError(ValueError):
    """Input whose layout is wrong; names the file and, where known, the line and column."""

    def __init__(
        self, file: str, reason: str, line: int | None = None, column: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
        where = file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")


class DownloadError(RuntimeError):
    """A download that failed (network, HTTP status, not the expected content)."""


# --- parsing -----------------------------------------------------------------------------------


def display_name(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise IngestError(label, f"not UTF-8 text (byte {e.start})", line=line) from e


def _header_columns(header: list[str], label: str, wine_type: schema.WineType | None) -> list[str]:
    expected = len(schema.DATA_COLUMNS) - 1
    columns: list[str] = []
    for position, raw_name in enumerate(header, start=1):
        name = raw_name.strip()
        column = _NAME_TO_COLUMN.get(name)
        if column is None:
            raise IngestError(
                label,
                f"unexpected column {name!r} (field {position} of the header); expected the"
                f" {expected} UCI columns {list(schema.UCI_TO_SNAKE)}, optionally"
                f" {schema.WINE_TYPE!r}",
                line=1,
                column=name,
            )
        if column in columns:
            raise IngestError(label, "column appears twice in the header", line=1, column=name)
        columns.append(column)
    required = [c for c in schema.DATA_COLUMNS if c != schema.WINE_TYPE]
    if wine_type is None:
        required.append(schema.WINE_TYPE)
    missing = [c for c in required if c not in columns]
    if missing:
        hint = ""
        if missing == [schema.WINE_TYPE]:
            hint = " (nor does the file name tell it: name the file *red* or *white*)"
        raise IngestError(
            label,
            f"missing column(s) {missing}{hint}; the header has {len(columns)} columns",
            line=1,
            column=missing[0],
        )
    return columns


def parse_csv_text(text: str, label: str, wine_type: schema.WineType | None = None) -> pd.DataFrame:
    """UCI-layout text (``;``-separated, header first) -> :data:`RAW_COLUMNS`, values as text.

    ``wine_type`` fills the column when the file has none (a ``wine_type`` column wins).
    """
    if not text.strip():
        raise IngestError(label, "the file is empty; expected a header line and data rows", line=1)
    first_line = text.splitlines()[0]
    if ";" not in first_line:
        for separator, name in ((",", "','"), ("\t", "tabs")):
            if separator in first_line:
                raise IngestError(
                    label,
                    f"the header is separated by {name}, but the UCI layout separates fields"
                    " with ';'",
                    line=1,
                )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        header = next(reader)
        for record in reader:
            if record and (len(record) > 1 or record[0].strip()):  # blank lines carry no wine
                records.append((reader.line_num, record))
    except csv.Error as e:
        raise IngestError(label, f"malformed CSV: {e}", line=reader.line_num) from e
    columns = _header_columns(header, label, wine_type)
    if not records:
        raise IngestError(label, "the file has a header but no data rows", line=2)
    for i, (line, record) in enumerate(records):
        if len(record) != len(columns):
            _raise_width(record, columns, line, label, last=i == len(records) - 1)
    last_line, last_record = records[-1]
    if not text.endswith(("\n", "\r")) and last_record[-1].strip() == "":
        raise IngestError(
            label,
            "the last line ends in an empty field without a line break: the file looks truncated",
            line=last_line,
            column=columns[-1],
        )
    rows = [r for _, r in records]
    lines = [n for n, _ in records]
    frame = pd.DataFrame(rows, columns=columns, dtype="str")
    if schema.WINE_TYPE not in frame.columns:
        frame[schema.WINE_TYPE] = wine_type
    frame[SOURCE_FILE] = label
    frame[SOURCE_LINE] = np.asarray(lines, dtype=np.int64)
    return frame.loc[:, list(RAW_COLUMNS)]


def _raise_width(record: list[str], columns: list[str], line: int, label: str, last: bool) -> None:
    n, width = len(record), len(columns)
    if n < width:
        reason = f"{n} fields where the header has {width}: no value for {columns[n]!r} onwards"
        column = columns[n]
        if n == 1 and "," in record[0]:
            reason = "fields are separated by ',' but the header uses ';'"
            column = columns[0]
        elif last:
            reason += "; this is the last line, so the file looks truncated"
    else:
        reason = (
            f"{n} fields where the header has {width}: field {width + 1} ({record[width]!r})"
            f" has no column"
        )
        column = f"field {width + 1}"
    raise IngestError(label, reason, line=line, column=column)


def wine_type_from_name(name: str) -> schema.WineType | None:
    """``red`` or ``white`` when exactly one of them appears in a file name."""
    lowered = name.lower()
    found = [t for t in schema.WINE_TYPES if t in lowered]
    return found[0] if len(found) == 1 else None


def read_raw_file(
    path: Path, wine_type: schema.WineType | None = None, label: str | None = None
) -> pd.DataFrame:
    """One CSV file -> :data:`RAW_COLUMNS` (text values); wine type from the argument, a
    ``wine_type`` column or the file name, in that order of need."""
    label = label or display_name(path)
    if not path.is_file():
        raise IngestError(label, "no such file")
    data = path.read_bytes()
    if not data:
        raise IngestError(label, "the file is empty (0 bytes)", line=1)
    return parse_csv_text(_decode(data, label), label, wine_type or wine_type_from_name(path.name))


def read_raw_dir(folder: Path) -> pd.DataFrame:
    """Both UCI files of a folder (red first) -> :data:`RAW_COLUMNS`."""
    paths = [folder / UCI_FILES[t] for t in schema.WINE_TYPES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise IngestError(
            display_name(folder), f"the folder has no {missing} (it needs both UCI files)"
        )
    frames = [read_raw_file(p, t) for p, t in zip(paths, schema.WINE_TYPES, strict=True)]
    return pd.concat(frames, ignore_index=True)


def to_numeric(raw: pd.DataFrame) -> pd.DataFrame:
    """Raw text rows -> ``schema.DATA_COLUMNS`` with float measurements and integer quality.

    Raises :class:`IngestError` at the first cell that is not a number (or a fractional quality).
    """
    out = pd.DataFrame(index=raw.index)
    for column in (*schema.FEATURE_NAMES, schema.TARGET):
        text = raw[column]
        values = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = values.isna().to_numpy()
        if column == schema.TARGET:
            bad = bad | ~np.isclose(values.to_numpy(), np.round(values.to_numpy()))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = raw.iloc[i]
            kind = "an integer" if column == schema.TARGET else "a number"
            raise IngestError(
                str(row[SOURCE_FILE]),
                f"expected {kind}, got {text.iloc[i]!r}",
                line=int(row[SOURCE_LINE]),
                column=column,
            )
        out[column] = values.round().astype("int64") if column == schema.TARGET else values
    out[schema.WINE_TYPE] = raw[schema.WINE_TYPE].astype("str")
    return out.loc[:, list(schema.DATA_COLUMNS)]


def read_uci_file(path: Path, wine_type: schema.WineType) -> pd.DataFrame:
    """One UCI file -> ``schema.DATA_COLUMNS`` (float measurements, int quality, ``wine_type``)."""
    return to_numeric(read_raw_file(path, wine_type)).reset_index(drop=True)


def read_uci_dir(folder: Path) -> pd.DataFrame:
    """Both UCI files of a folder, red first, as one frame with ``schema.DATA_COLUMNS``."""
    return to_numeric(read_raw_dir(folder)).reset_index(drop=True)


# --- sources -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, timeout: float, progress: Progress | None = None) -> Path:
    """Fetch ``url`` into ``dest`` atomically; any failure raises :class:`DownloadError`."""
    request = urllib.request.Request(url, headers={"User-Agent": "winequality-ingest"})  # noqa: S310
    try:
        with (
            atomic_path(dest) as tmp,
            urllib.request.urlopen(request, timeout=timeout) as response,  # noqa: S310 (scheme checked by the caller)
            tmp.open("wb") as out,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"{url}: received {done} of {total} bytes")
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"{url}: {e.reason}") from e
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {e}") from e
    return dest


def _zip_members(archive: Path) -> dict[str, str]:
    """Base name -> member name of the CSV files in a zip archive."""
    try:
        with zipfile.ZipFile(archive) as z:
            return {
                Path(m).name: m
                for m in z.namelist()
                if m.lower().endswith(".csv") and not Path(m).name.startswith(".")
            }
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive.name} is not a valid zip archive: {e}") from e


def extract_uci_zip(archive: Path, dest: Path) -> dict[schema.WineType, Path]:
    """The two UCI CSVs of an archive (found by base name, at any depth) extracted into ``dest``."""
    members = _zip_members(archive)
    missing = [name for name in UCI_FILES.values() if name not in members]
    if missing:
        raise DownloadError(
            f"{archive.name} lacks {missing}; it holds {sorted(members) or 'no CSV files'}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[schema.WineType, Path] = {}
    with zipfile.ZipFile(archive) as z:
        for wine_type, name in UCI_FILES.items():
            target = dest / name
            write_bytes(target, z.read(members[name]))
            out[wine_type] = target
    return out


def uci_archive(url: str, cache_dir: Path) -> Path:
    """Where the UCI archive of ``url`` is cached (drop a manually fetched copy here)."""
    return cache_dir / "uci" / (Path(urllib.parse.urlparse(url).path).name or "wine-quality.zip")


def fetch_uci(
    url: str, cache_dir: Path, timeout: float, progress: Progress | None = None
) -> tuple[Path, dict[schema.WineType, Path]]:
    """The UCI archive and its two files, downloaded once (a valid cached archive is reused)."""
    archive = uci_archive(url, cache_dir)
    if archive.is_file():
        try:
            return archive, extract_uci_zip(archive, archive.parent)
        except DownloadError:
            archive.unlink()  # a broken cache entry is fetched again rather than trusted
    _check_scheme(url)
    download(url, archive, timeout, progress)
    try:
        return archive, extract_uci_zip(archive, archive.parent)
    except DownloadError:
        archive.unlink(missing_ok=True)
        raise


def _check_scheme(url: str) -> None:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs are supported, not {scheme!r}")


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


@dataclass(frozen=True)
class Ingested:
    """Raw rows plus the provenance written to ``source.json``."""

    frame: pd.DataFrame
    source: str
    """What was actually read: ``uci``, a path, a URL or ``synthetic``."""
    kind: SourceKind
    files: dict[str, str]
    """Display name -> sha256 of each input file."""
    reason: str | None = None
    """Why the source differs from the one asked for (``auto`` fallback), else None."""
    details: dict[str, Any] = field(default_factory=dict)

    def provenance(self, requested: str) -> dict[str, Any]:
        return {
            "source": self.source,
            "requested": requested,
            "kind": self.kind,
            "rows": len(self.frame),
            "sha256": self.files,
            "reason": self.reason,
            **self.details,
        }


@dataclass(frozen=True)
class SourceOptions:
    """Everything the sources need besides their name (filled from settings and params)."""

    cache_dir: Path
    timeout: float
    uci_url: str = UCI_URL
    synthetic_rows: int = 6000
    seed: int = 42
    synthetic_dir: Path = Path("data/raw/synthetic")
    """Where the generator's UCI-layout files go, so validation can point at their lines."""
    progress: Progress | None = None


def _hashes(paths: Sequence[Path]) -> dict[str, str]:
    return {display_name(p): sha256_file(p) for p in paths}


def _from_files(
    paths: Sequence[Path],
    source: str,
    kind: SourceKind,
    archive: Path | None = None,
    **kw: Any,
) -> Ingested:
    frames = [read_raw_file(p, wine_type_from_name(p.name)) for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    hashed = [archive, *paths] if archive is not None else list(paths)
    return Ingested(frame, source, kind, _hashes(hashed), **kw)


def ingest_uci(options: SourceOptions) -> Ingested:
    archive, files = fetch_uci(
        options.uci_url, options.cache_dir, options.timeout, options.progress
    )
    return _from_files(
        [files[t] for t in schema.WINE_TYPES],
        "uci",
        "uci",
        archive,
        details={"url": options.uci_url},
    )


def ingest_synthetic(options: SourceOptions, reason: str | None = None) -> Ingested:
    from winequality.data import synthetic  # scipy is only needed when generating

    frame = synthetic.generate(options.synthetic_rows, options.seed)
    paths = synthetic.write_uci_files(frame, options.synthetic_dir)
    return _from_files(
        [paths[t] for t in schema.WINE_TYPES],
        "synthetic",
        "synthetic",
        reason=reason,
        details={"seed": options.seed, "synthetic_rows": options.synthetic_rows},
    )


def ingest_url(url: str, options: SourceOptions) -> Ingested:
    _check_scheme(url)
    name = Path(urllib.parse.urlparse(url).path).name or "download.csv"
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    folder = options.cache_dir / "downloads" / key
    path = download(url, folder / name, options.timeout, options.progress)
    if zipfile.is_zipfile(path):
        files = extract_uci_zip(path, folder)
        return _from_files([files[t] for t in schema.WINE_TYPES], url, "url", path)
    return _from_files([path], url, "url")


def ingest_path(path: Path, options: SourceOptions) -> Ingested:
    if path.is_dir():
        frame = read_raw_dir(path)
        paths = [path / UCI_FILES[t] for t in schema.WINE_TYPES]
        return Ingested(frame, display_name(path), "path", _hashes(paths))
    if path.is_file() and zipfile.is_zipfile(path):
        # A manually downloaded UCI archive (machines without internet access).
        folder = options.cache_dir / "archives" / sha256_file(path)[:12]
        try:
            files = extract_uci_zip(path, folder)
        except DownloadError as e:
            raise IngestError(display_name(path), str(e)) from e
        return _from_files([files[t] for t in schema.WINE_TYPES], display_name(path), "path", path)
    if path.is_file():
        return _from_files([path], display_name(path), "path")
    raise IngestError(
        str(path),
        "no such file or folder (a source is auto, uci, synthetic, an http(s) URL, a folder"
        " with the two UCI files or a CSV file)",
    )


def ingest(source: str, options: SourceOptions) -> Ingested:
    """Read ``source``: ``auto``, ``uci``, ``synthetic``, an http(s) URL, a folder or a file.

    ``auto`` uses the UCI download when it works and otherwise the generator, recording why in
    :attr:`Ingested.reason`. An explicit ``uci`` or URL that cannot be fetched raises
    :class:`DownloadError`.
    """
    if source == "auto":
        try:
            return ingest_uci(options)
        except DownloadError as e:
            return ingest_synthetic(options, reason=f"the UCI download failed: {e}")
    if source == "uci":
        return ingest_uci(options)
    if source == "synthetic":
        return ingest_synthetic(options)
    if is_url(source):
        return ingest_url(source, options)
    return ingest_path(Path(source), options)


def write_raw(ingested: Ingested, out_dir: Path, requested: str) -> tuple[Path, Path]:
    """``wines.csv`` (text values, provenance columns) and ``source.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wines = out_dir / "wines.csv"
    meta = out_dir / "source.json"
    with atomic_path(wines) as tmp:
        ingested.frame.loc[:, list(RAW_COLUMNS)].to_csv(tmp, index=False, lineterminator="\n")
    write_json(meta, ingested.provenance(requested), sort_keys=False)
    return wines, meta
