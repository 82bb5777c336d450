"""The durable store of labelled production data and of the rows it was served for.

SQLAlchemy Core over one schema, two databases: SQLite (WAL mode; the embedded default, no
server, one host) or PostgreSQL (psycopg 3; shared by every app replica and the retraining job).
The serving app writes labels from ``POST /feedback`` and, when replicas share the store, the
rows it served (``served_requests``, one row per answered request, written off the request path
by ``ServedRowWriter``) so a label can name a request another replica answered. The retraining
job reads the labels back as a data frame with ``schema.DATA_COLUMNS``.

Every operation runs in its own transaction and rolls back when it fails, so one failure (a
transient SQLite lock, a PostgreSQL restart) never leaves the connection unusable: the next call
works as soon as the database does. Failures surface as ``StoreError`` naming the store and the
reason; a write returns only after its commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from winequality.contract import schema
from winequality.contract.problems import FeatureError
from winequality.database import is_postgresql, normalize_url, redact, sqlite_file
from winequality.feedback_store.rows import (
    COPY_SIGNATURE,
    COPY_TRAILER,
    SERVED_COPY,
    LabelConflictError,
    ServedRequest,
    StoreError,
    pg_connect_args,
    served_copy_rows,
    served_record,
    validate_labelled_rows,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_METADATA: Final = sa.MetaData()

FEEDBACK: Final = sa.Table(
    "feedback",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text),
    sa.Column("row_index", sa.Integer),
    sa.Column("quality", sa.Integer, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("served_quality", sa.Float),
    sa.Column("model_version", sa.Text),
    sqlite_autoincrement=True,
)
"""One label a row: the wine (JSON, sorted keys), its true quality and, for a label given by
request id, the score served for it and the model version that served it."""
_FEEDBACK_BY_VERSION: Final = sa.Index(
    "feedback_by_version", FEEDBACK.c.model_version, FEEDBACK.c.id
)
_ONE_LABEL: Final = sa.Index(
    "feedback_one_label", FEEDBACK.c.request_id, FEEDBACK.c.row_index, unique=True
)
"""One label per (request id, row): a second, different one is a ``LabelConflictError``. Labels
given with the wines (no request id) are NULL there, and NULLs never collide."""
RELABELLED: Final = sa.Table(
    "feedback_relabelled",
    _METADATA,
    *(sa.Column(c.name, c.type) for c in FEEDBACK.columns),
)
"""Labels set aside when ``_ONE_LABEL`` was added to a database that held several for one
(request id, row): every one after the first, kept here, not trained on."""
_ADDED_COLUMNS: Final = ("served_quality", "model_version")
"""Columns added after the first release: a database written before them gains them (NULL for
its old rows, which were labelled without the served score) when it is opened."""

SERVED: Final = sa.Table(
    "served_requests",
    _METADATA,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("served_at", sa.Double, nullable=False),
    sa.Column("model_version", sa.Text),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("features", sa.LargeBinary, nullable=False),
    sa.Column("quality", sa.LargeBinary),
)
"""One answered request a row: its model matrix (float32, C order, ``schema.N_MODEL_COLUMNS`` a
wine: 48 bytes) and its scores (float32), so one insert carries a whole request whatever its
size. ``served_at`` is Unix time (retention)."""
_SERVED_COLUMNS: Final = (
    "request_id",
    "served_at",
    "model_version",
    "n_rows",
    "features",
    "quality",
)
_SERVED_BY_REQUEST: Final = sa.Index("served_by_request", SERVED.c.request_id, SERVED.c.id).ddl_if(
    dialect="sqlite"
)
_SERVED_BY_REQUEST_HASH: Final = sa.Index(
    "served_by_request_hash", SERVED.c.request_id, postgresql_using="hash"
).ddl_if(dialect="postgresql")
_SERVED_BY_TIME: Final = sa.Index("served_by_time", SERVED.c.served_at, postgresql_using="brin")
"""PostgreSQL takes a row for every answered request: a hash index finds a request id (random,
so a B-tree on it is the costliest part of an insert) and a BRIN one the old rows to prune (rows
arrive in time order): much less database CPU per served row than two B-trees
(``benchmarks/served_rows.py``, ``PostgreSQL CPU us/req``). SQLite keeps its B-trees."""
_OLD_SERVED_BY_REQUEST_PG: Final = "served_by_request"
_SCHEMA_LOCK: Final = 0x57494E45  # pg_advisory_xact_lock key: replicas create the tables in turn


def _why(exc: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's wrapper repeats the statement)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return text.splitlines()[0].strip() if text else type(cause).__name__


def _engine(url: str, timeout_s: float) -> sa.Engine:
    if is_postgresql(url):
        return sa.create_engine(
            url,
            pool_pre_ping=True,  # a connection the server dropped (restart) is replaced
            pool_size=4,
            max_overflow=4,
            pool_timeout=timeout_s,
            connect_args=pg_connect_args(timeout_s),
        )
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": timeout_s})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


class FeedbackStore:
    """Labels and served requests in one database, safe to share between threads.

    ``url``: a path or ``sqlite:///path`` (embedded), or ``postgresql://...``. Opening creates
    the tables if needed (``StoreError`` when the database cannot be reached). ``timeout_s``
    bounds a connection attempt, a SQLite lock wait and (five times over) a PostgreSQL statement.
    """

    def __init__(self, url: str | Path, *, timeout_s: float = 5.0) -> None:
        self.url = normalize_url(url)
        self.where = redact(self.url)
        with self._failing("open"):
            self._engine = _engine(self.url, timeout_s)
            self._create_schema()

    def _create_schema(self, attempts: int = 3) -> None:
        # Replicas starting together: PostgreSQL creates in turn (an advisory lock); SQLite's
        # check-then-create is not atomic, so a table another process created meanwhile fails
        # the create, and the next attempt finds it.
        for attempt in range(attempts):
            try:
                with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                    _METADATA.create_all(conn)
                    self._migrate(conn)
                return
            except DBAPIError:
                if attempt == attempts - 1:
                    raise

    @contextlib.contextmanager
    def _failing(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"feedback store {self.where} cannot {action}: {_why(exc)}") from exc
        except Exception as exc:
            # The driver's own errors (a raw connection's, which SQLAlchemy does not wrap).
            engine = getattr(self, "_engine", None)
            dbapi = getattr(engine.dialect, "loaded_dbapi", None) if engine is not None else None
            if dbapi is None or not isinstance(exc, dbapi.Error):
                raise
            raise StoreError(f"feedback store {self.where} cannot {action}: {_why(exc)}") from exc

    @staticmethod
    def _migrate(conn: sa.Connection) -> None:
        present = {c["name"] for c in sa.inspect(conn).get_columns(FEEDBACK.name)}
        for name in _ADDED_COLUMNS:
            if name not in present:
                kind = FEEDBACK.c[name].type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f"ALTER TABLE {FEEDBACK.name} ADD COLUMN {name} {kind}"))
        postgresql = conn.dialect.name == "postgresql"
        by_request = _SERVED_BY_REQUEST_HASH if postgresql else _SERVED_BY_REQUEST
        for index in (_FEEDBACK_BY_VERSION, by_request, _SERVED_BY_TIME):
            index.create(conn, checkfirst=True)
        if postgresql:  # a database written before the hash index: its B-tree is not needed
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {_OLD_SERVED_BY_REQUEST_PG}"))
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes(FEEDBACK.name)}
        if _ONE_LABEL.name not in indexes:
            FeedbackStore._set_aside_relabels(conn)
            _ONE_LABEL.create(conn)

    @staticmethod
    def _set_aside_relabels(conn: sa.Connection) -> None:
        """Move every label after the first of a (request id, row) to ``RELABELLED``."""
        first = (
            sa.select(sa.func.min(FEEDBACK.c.id))
            .where(FEEDBACK.c.request_id.is_not(None))
            .group_by(FEEDBACK.c.request_id, FEEDBACK.c.row_index)
        )
        later = sa.and_(FEEDBACK.c.request_id.is_not(None), FEEDBACK.c.id.not_in(first))
        columns = [c.name for c in FEEDBACK.columns]
        conn.execute(RELABELLED.insert().from_select(columns, sa.select(FEEDBACK).where(later)))
        moved = conn.execute(FEEDBACK.delete().where(later)).rowcount
        if moved:
            log.warning(
                "%d repeated label(s) of a (request id, row) moved to %s: one label a row now",
                moved,
                RELABELLED.name,
            )

    def add(
        self,
        rows: Sequence[Mapping[str, Any]],
        qualities: Sequence[int],
        request_id: str | None = None,
        row_indices: Sequence[int] | None = None,
        *,
        served: Sequence[float] | None = None,
        model_version: str | None = None,
    ) -> int:
        """Store validated rows with their labels, committed when it returns; ``FeatureError``
        on bad input, ``StoreError`` when nothing could be stored.

        ``served``: the score the app answered for each row, by ``model_version`` (labels given
        with the wines themselves have neither).
        """
        problems = validate_labelled_rows(rows, qualities)
        if problems:
            raise FeatureError(problems)
        now = datetime.now(UTC).isoformat()
        indices = list(row_indices) if row_indices is not None else [None] * len(rows)
        scores = [float(s) for s in served] if served is not None else [None] * len(rows)
        records = [
            {
                "received_at": now,
                "request_id": request_id,
                "row_index": idx,
                "quality": int(q),
                "features": json.dumps({k: row[k] for k in sorted(row)}),
                "served_quality": score,
                "model_version": model_version if score is not None else None,
            }
            for row, q, idx, score in zip(rows, qualities, indices, scores, strict=True)
        ]
        with self._failing("store the labels"):
            try:
                with self._engine.begin() as conn:
                    conn.execute(FEEDBACK.insert(), records)
            except IntegrityError:
                if request_id is None:
                    raise
                return self._relabel(request_id, records)
        return len(records)

    def _relabel(self, request_id: str, records: list[dict[str, Any]]) -> int:
        """A label for a (request id, row) that has one: 0 (nothing new) when it is the same,
        else ``LabelConflictError`` naming both."""
        wanted = {r["row_index"]: r["quality"] for r in records}
        query = sa.select(FEEDBACK.c.row_index, FEEDBACK.c.quality).where(
            FEEDBACK.c.request_id == request_id, FEEDBACK.c.row_index.in_(list(wanted))
        )
        with self._engine.connect() as conn:
            existing = dict(conn.execute(query).tuples().all())
        for index, quality in wanted.items():
            have = existing.get(index)
            if have is not None and int(have) != quality:
                raise LabelConflictError(request_id, index, int(have), quality)
        if len(existing) != len(wanted):  # a unique violation, yet not all rows labelled?
            raise StoreError(f"feedback store {self.where} cannot store the labels: conflict")
        return 0

    def labelled(self, model_version: str, limit: int) -> list[tuple[float, float]]:
        """The latest ``limit`` (true quality, served score) pairs of a version, oldest first."""
        query = (
            sa.select(FEEDBACK.c.quality, FEEDBACK.c.served_quality)
            .where(FEEDBACK.c.model_version == model_version)
            .where(FEEDBACK.c.served_quality.is_not(None))
            .order_by(FEEDBACK.c.id.desc())
            .limit(limit)
        )
        with self._failing("read the labels"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(float(q), float(s)) for q, s in reversed(rows)]

    def count(self) -> int:
        with self._failing("count the labels"), self._engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(FEEDBACK)).scalar_one()
        return int(n)

    def frame(self) -> pd.DataFrame:
        """All feedback as a frame with ``schema.DATA_COLUMNS`` (oldest first)."""
        import pandas as pd

        query = sa.select(FEEDBACK.c.features, FEEDBACK.c.quality).order_by(FEEDBACK.c.id)
        with self._failing("read the labels"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        records = [json.loads(features) | {schema.TARGET: quality} for features, quality in rows]
        frame = pd.DataFrame.from_records(records, columns=list(schema.DATA_COLUMNS))
        frame = frame.astype(dict.fromkeys(schema.FEATURE_NAMES, np.float64))
        return frame.astype({schema.TARGET: np.int64, schema.WINE_TYPE: str})

    def add_served(self, requests: Sequence[tuple[str, float, ServedRequest]]) -> int:
        """Store answered requests (request id, Unix time, what was served) in one transaction;
        returns the number of wines. PostgreSQL takes them by binary ``COPY`` (this runs for
        every request the app answers: a multi-row INSERT costs the client several times more)."""
        if not requests:
            return 0
        with self._failing("store the served rows"):
            if self._engine.dialect.name == "postgresql":
                self._copy_served(requests)
            else:
                records = [served_record(rid, at, served) for rid, at, served in requests]
                with self._engine.begin() as conn:
                    rows = [dict(zip(_SERVED_COLUMNS, r, strict=True)) for r in records]
                    conn.execute(SERVED.insert(), rows)
        return sum(len(served.rows) for _, _, served in requests)

    def _copy_served(self, requests: Sequence[tuple[str, float, ServedRequest]]) -> None:
        raw = self._engine.raw_connection()  # its errors are the driver's: see _failing
        try:
            encoding = raw.driver_connection.info.encoding  # type: ignore[union-attr]
            cursor = raw.cursor()
            with cursor.copy(SERVED_COPY) as copy:
                copy.write(COPY_SIGNATURE + served_copy_rows(requests, encoding) + COPY_TRAILER)
            raw.commit()
        except BaseException:
            raw.invalidate()  # a connection whose COPY failed is not reused
            raise
        finally:
            raw.close()

    def served(self, request_id: str) -> ServedRequest | None:
        """The latest request stored under ``request_id`` (a reused id names its latest one)."""
        query = (
            sa.select(SERVED.c.n_rows, SERVED.c.features, SERVED.c.quality, SERVED.c.model_version)
            .where(SERVED.c.request_id == request_id)
            .order_by(SERVED.c.id.desc())
            .limit(1)
        )
        with self._failing("read the served rows"), self._engine.connect() as conn:
            found = conn.execute(query).first()
        if found is None:
            return None
        n, features, quality, version = found
        matrix = np.frombuffer(features, dtype=np.float32)
        if matrix.size != n * schema.N_MODEL_COLUMNS:
            return None  # written under another feature contract: not this one's rows
        scores = None if quality is None else np.frombuffer(quality, dtype=np.float32)
        return ServedRequest(matrix.reshape(n, schema.N_MODEL_COLUMNS), scores, version)

    def prune_served(self, before: float) -> int:
        """Forget the requests served before Unix time ``before``; returns how many."""
        with self._failing("prune the served rows"), self._engine.begin() as conn:
            result = conn.execute(SERVED.delete().where(SERVED.c.served_at < before))
        return int(result.rowcount)

    def ping(self) -> None:
        with self._failing("answer"), self._engine.connect() as conn:
            conn.execute(sa.select(1))

    def close(self) -> None:
        self._engine.dispose()


def read_feedback(url: str | Path) -> pd.DataFrame:
    """All labels in the store at ``url`` (an empty frame when an embedded one does not exist:
    reading never creates the file)."""
    import pandas as pd

    normalized = normalize_url(url)
    path = sqlite_file(normalized)
    if path is not None and not path.is_file():
        return pd.DataFrame(columns=list(schema.DATA_COLUMNS))
    store = FeedbackStore(normalized)
    try:
        return store.frame()
    finally:
        store.close()
