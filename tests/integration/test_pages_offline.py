"""The pages a person looks at render in headless Chromium with nothing from outside the machine.

The serving app's and the detector's ``/docs``, the detector's drift report and
the ``dvc plots show`` page of the evaluate stage's plots. The real processes run on loopback;
Chromium resolves no host but 127.0.0.1, and every request each page makes is checked to be
loopback, a local file or inline data. Screenshots are kept in the test's temporary folder.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.support.browser import OfflineBrowser, PageLoad, find_chromium, offline_browser
from tests.support.bundles import train_model
from tests.support.project import make_pipeline_repo, pipeline_env, run

from winequality.contract import schema
from winequality.data.prepare import split
from winequality.monitoring.service import CE_REQUEST
from winequality.process import ManagedProcess, free_port
from winequality.training.train import save_model

pytestmark = pytest.mark.integration

WINDOW = 100


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineBrowser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (`make system-deps` installs Debian's package)")
    with offline_browser(executable, tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def assert_stayed_local(load: PageLoad) -> None:
    assert load.requests, "the page made no request at all"
    assert load.off_machine() == [], "requests that left the machine"
    assert load.failures == []
    assert load.errors == []


def operation_count(openapi: dict[str, Any]) -> int:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(len(methods & set(item)) for item in openapi["paths"].values())


@pytest.fixture(scope="module")
def app_url(
    tmp_path_factory: pytest.TempPathFactory, serving_bundles: dict[str, Path]
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pages-app")
    model_dir = Path(shutil.copytree(serving_bundles["1"], root / "model"))
    port = free_port()
    cmd = [
        sys.executable, "-m", "winequality.cli", "serve", "--model-dir", str(model_dir),
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess("serving-app", cmd, root / "app.log") as process:
        process.wait_ready(url=f"{url}/health/ready", timeout=60)
        yield url


@pytest.fixture(scope="module")
def detector_url(
    tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pages-detector")
    red = real_wines[real_wines[schema.WINE_TYPE] == "red"]
    red.sample(1000, random_state=0).to_parquet(root / "reference.parquet")
    (root / "params.yaml").write_text(f"drift:\n  window_size: {WINDOW}\n  p_val: 0.05\n")
    port = free_port()
    cmd = [
        sys.executable, "-m", "winequality.cli", "drift", "serve",
        "--reference", str(root / "reference.parquet"), "--params", str(root / "params.yaml"),
        "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess("detector", cmd, root / "detector.log") as process:
        process.wait_ready(url=f"{url}/health/ready", timeout=60)
        yield url


@pytest.fixture(scope="module")
def drifted_detector(detector_url: str, real_wines: pd.DataFrame) -> str:
    """The detector after one full window of white wines against its red reference."""
    white = real_wines[real_wines[schema.WINE_TYPE] == "white"].sample(WINDOW, random_state=1)
    rows = white.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
    headers = {
        "Ce-Id": "pages-1",
        "Ce-Specversion": "1.0",
        "Ce-Source": "tests/pages",
        "Ce-Type": CE_REQUEST,
        "Content-Type": "application/json",
    }
    answer = httpx.post(f"{detector_url}/", json={"wines": rows}, headers=headers, timeout=30)
    assert answer.status_code < 300, answer.text
    assert httpx.get(f"{detector_url}/drift", timeout=10).json()["windows_tested"] == 1
    return detector_url


@pytest.mark.parametrize("service", ["app", "detector"])
def test_swagger_ui_renders_every_operation_offline(
    service: str, request: pytest.FixtureRequest, browser: OfflineBrowser, screenshots: Path
) -> None:
    url: str = request.getfixturevalue(f"{service}_url")
    openapi = httpx.get(f"{url}/openapi.json", timeout=10).json()
    load = browser.load(f"{url}/docs", ".opblock", screenshots / f"{service}-docs.png")
    assert_stayed_local(load)
    rendered = load.page.locator(".opblock").count()
    assert rendered == operation_count(openapi)
    paths = load.page.locator(".opblock-summary-path").all_inner_texts()
    assert {p.replace("\u200b", "") for p in paths} == set(openapi["paths"])
    assert load.page.locator(".info .title").inner_text().startswith(openapi["info"]["title"])


def test_drift_report_renders_its_plots_offline(
    drifted_detector: str, browser: OfflineBrowser, screenshots: Path
) -> None:
    load = browser.load(f"{drifted_detector}/report", "figure svg", screenshots / "report.png")
    assert_stayed_local(load)
    sizes = load.page.eval_on_selector_all(
        "figure svg",
        "svgs => svgs.map(s => [s.clientWidth, s.clientHeight])",
    )
    # The sequential decision's charts, then one plot per feature and the type mix.
    assert len(sizes) == 1 + len(schema.FEATURE_NAMES) + 1
    assert all(w > 100 and h > 100 for w, h in sizes)
    text = load.page.locator("body").inner_text()
    assert "DRIFT CONFIRMED" in text
    assert "raised by" in text


@pytest.fixture(scope="module")
def plots_page(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """``dvc plots show`` after the real evaluate stage ran (alone) on a model of the real data."""
    repo = make_pipeline_repo(tmp_path_factory.mktemp("plots") / "project")
    train, test = split(real_wines, 0.2, 0)
    (repo / "data/prepared").mkdir(parents=True)
    train.to_parquet(repo / "data/prepared/train.parquet")
    test.to_parquet(repo / "data/prepared/test.parquet")
    save_model(train_model(train), repo / "models/model.pkl")
    env = pipeline_env(repo)
    run(["dvc", "repro", "--single-item", "evaluate"], repo, env)
    run(["dvc", "plots", "show", "-o", "plots-out"], repo, env)
    return repo / "plots-out" / "index.html"


def test_dvc_plots_page_shows_the_evaluate_images_offline(
    plots_page: Path, browser: OfflineBrowser, screenshots: Path
) -> None:
    load = browser.load(plots_page.as_uri(), "img", screenshots / "dvc-plots.png")
    assert_stayed_local(load)
    images = load.page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert [Path(src).name for src, _, _ in images] == [
        "workspace_reports_plots_predicted_vs_actual.png",
        "workspace_reports_plots_residuals.png",
    ]
    assert all(complete and width > 300 for _, complete, width in images)
    assert "<script" not in plots_page.read_text()
