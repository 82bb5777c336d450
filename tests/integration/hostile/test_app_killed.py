"""kill -9 of the app under feedback traffic: every label it acknowledged is in the store, and a
restarted app on the same store takes labels again at once.

The app answers 201 only after the store committed (SQLite in WAL mode here, the embedded
default), so a crash can lose what was in flight but never what a client was told is stored.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.services import FEEDBACK_TOKEN, start_app

from winequality.feedback_store import read_feedback
from winequality.serving.schemas import example_wine

pytestmark = pytest.mark.integration

WRITERS = 4


def _wine(i: int) -> dict[str, Any]:
    """One distinct wine per label, so the store's rows can be matched to acknowledgements."""
    wine = example_wine()
    wine["alcohol"] = 9.0 + i / 1_000_000
    return wine


def test_labels_acknowledged_before_a_kill_9_are_all_in_the_store(
    tmp_path: Path, serving_bundles: dict[str, Path]
) -> None:
    root = tmp_path / "app"
    store = root / "feedback.db"
    acknowledged: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    headers = {"authorization": f"Bearer {FEEDBACK_TOKEN}"}

    with start_app(root, serving_bundles["1"]) as app:

        def post_labels(offset: int) -> None:
            with httpx.Client(base_url=app.url, timeout=10, headers=headers) as client:
                i = offset
                while not stop.is_set():
                    wine = _wine(i)
                    try:
                        answer = client.post("/feedback", json={"wines": [wine], "quality": [6]})
                    except httpx.TransportError:
                        return  # the process is gone: this label was never acknowledged
                    if answer.status_code == 201:
                        with lock:
                            acknowledged.append(float(wine["alcohol"]))
                    i += WRITERS

        writers = [threading.Thread(target=post_labels, args=(k,)) for k in range(WRITERS)]
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(app.pid, signal.SIGKILL)
        stop.set()
        for writer in writers:
            writer.join(15)
        app.process.stop()

    assert len(acknowledged) >= 200, "the app acknowledged too few labels to judge"
    stored = read_feedback(store)
    stored_alcohol = {round(float(a), 7) for a in stored["alcohol"]}
    missing = {round(a, 7) for a in acknowledged} - stored_alcohol
    assert not missing, f"{len(missing)} acknowledged label(s) lost by kill -9"

    # The same store, a new process: labels are taken again at once.
    with start_app(root, serving_bundles["1"]) as again:
        answer = httpx.post(
            f"{again.url}/feedback",
            json={"wines": [_wine(123_457)], "quality": [5]},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    assert len(read_feedback(store)) == len(stored) + 1
