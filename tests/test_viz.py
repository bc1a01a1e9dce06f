"""kedro-viz on a smoke run: lineage and previews through its API, the pipelines rendered in headless Chromium.

The pages are read as Chromium's final DOM (``--dump-dom``), and, to click a dataset open, through Playwright
driving that same system Chromium.

The server runs in the smoke project (``run_smoke`` in conftest.py), whose ``conf/`` is a copy of the project's,
so the lineage is the project's and every dataset exists for its preview. Screenshots (of each page and of the
opened preview panels) and the server's log go to ``test-artifacts/kedro-viz/``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io.catalog_config_resolver import CatalogConfigResolver
from playwright.sync_api import Browser, expect, sync_playwright

from metasyn.versions import resolve_version
from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PIPELINES = ["data_prep", "finetune", "calibration", "synergy", "comparison"]
LAYERS = ["01_raw", "02_intermediate", "03_primary", "05_model_input", "06_models", "07_model_output", "08_reporting"]
VARIANTS = {"base", "metacog", "control_shuffled", "random_init"}  # each a namespace, shown as one group
# Nodes and datasets each pipeline's graph must show, namespaces expanded (nodes by their own name).
EXPECTED_ON_PAGE = {
    "data_prep": ["sample_answers", "build_training_examples", "answer_samples", "training_examples", "test_questions"],
    "finetune": ["train_adapter", "merge_adapter", "training_examples", "metacog.model", "control_shuffled.model"],
    "calibration": [
        "generate_confidence_answers",
        "combine_calibration_metrics",
        "base.calibration_outputs",
        "calibration_metrics_table",
    ],
    "synergy": [
        "extract_head_activity",
        "compute_phiid",
        "ablate_heads_cumulatively",
        "base.phiid_synergy",
        "random_init.head_scores",
    ],
    "comparison": [
        "test_layer_changes",
        "compose_report",
        "calibration_metrics_table",
        "layer_profiles_figure",
        "report",
    ],
}
# A preview of each kind the issue asks for: parquet tables, JSON metrics, figures.
PREVIEW_TYPES = {
    "calibration_metrics_table": "TablePreview",
    "base.head_scores": "TablePreview",
    "calibration_metrics_summary": "JSONPreview",
    "base.graph_measures": "JSONPreview",
    "layer_profiles_figure": "ImagePreview",
    "metacog.loss_curve": "ImagePreview",
}
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "kedro-viz"
ENV = "smoke"
# kedro-viz imports every pipeline and reads the whole catalog before it listens: 20-60 s on a busy 2-core machine.
STARTUP_TIMEOUT_S = 300
# For every Chromium the tests start, by hand or through Playwright (which adds --headless itself).
CHROMIUM_FLAGS = [
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DUMP_DOM_FLAGS = [
    "--headless",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    # Page timers run on virtual time: the DOM is taken once the graph's layout and transitions have finished.
    "--virtual-time-budget=30000",
]
VIEWPORT = {"width": 1600, "height": 1000}
# What the clicking test waits at most for the graph's layout (a web worker), a click and a preview's request: the
# 5 s of Playwright's expect() is too short on a busy 2-core machine.
UI_TIMEOUT_MS = 120_000
PREVIEW_ROWS = 5  # the rows of a table that kedro-datasets' ParquetDataset.preview() sends by default
CATCH_ALL_PATTERN = re.compile(r"\{[^{}]*\}")  # "{default}": the in-memory fallback, not a declared dataset


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed by scripts/install_chromium.sh when missing and we are root."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0:
        installed = subprocess.run(
            [PROJECT_ROOT / "scripts" / "install_chromium.sh"], capture_output=True, text=True, timeout=1800
        )
        assert installed.returncode == 0, f"scripts/install_chromium.sh failed:\n{installed.stderr[-3000:]}"
        return installed.stdout.strip().splitlines()[-1]
    reason = "chromium is not installed and installing it needs root: run `sudo scripts/install_chromium.sh`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"The browser tests must run in CI, but {reason}.")
    pytest.skip(reason)  # the reason is printed in the summary (-ra)


@pytest.fixture(scope="module")
def viz_project(run_smoke) -> Path:
    """A project directory with every pipeline's outputs (the smoke run of comparison and all it builds on)."""
    return run_smoke("comparison")


def _free_port() -> int:
    """A free TCP port below 49152: kedro-viz refuses the ephemeral range the OS hands out for port 0."""
    for port in random.sample(range(20000, 49152), 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("No free TCP port for kedro-viz between 20000 and 49151.")


def _kedro(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "kedro", *arguments]


def _kedro_environment() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}


def _stop(server: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True`` with everything it spawned (kedro-viz's uvicorn)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def viz_url(viz_project: Path) -> Iterator[str]:
    """``kedro viz run`` on 127.0.0.1 in the smoke project, once it answers ``/api/main``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "server.log"
    port = _free_port()
    command = _kedro("viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--env", ENV)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command,
            cwd=viz_project,
            env=_kedro_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"kedro viz exited with {server.returncode}:\n{log_path.read_text()[-5000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/main", timeout=30):
                    break
            except OSError:  # refused or timed out (URLError is an OSError) while it starts
                if time.monotonic() > deadline:
                    pytest.fail(f"kedro viz did not answer in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-5000:]}")
                time.sleep(2)
        yield url
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def viz_api(viz_url: str) -> Callable[[str], dict]:
    """GET one kedro-viz API endpoint (``main``, ``pipelines/<id>``, ``nodes/<id>``) as JSON."""

    def get(endpoint: str) -> dict:
        with urllib.request.urlopen(f"{viz_url}/api/{endpoint}", timeout=120) as response:
            return json.load(response)

    return get


@pytest.fixture(scope="module")
def main(viz_api) -> dict:
    return viz_api("main")


def _datasets(graph: dict) -> list[dict]:
    return [node for node in graph["nodes"] if node["type"] == "data"]


def test_api_lists_every_pipeline_with_its_nodes(main):
    assert {pipeline["id"] for pipeline in main["pipelines"]} >= {"__default__", *PIPELINES}
    for name in PIPELINES:
        assert any(node["type"] == "task" and name in node["pipelines"] for node in main["nodes"]), name


def test_every_dataset_has_a_layer_and_layers_run_raw_to_reporting(main):
    assert [node["name"] for node in _datasets(main) if not node["layer"]] == []
    # kedro-viz orders layers by data flow and sends none when data flows against them (a cycle such as
    # 06_models -> 02_intermediate -> ... -> 06_models).
    assert main["layers"] == LAYERS


def test_no_dataset_is_orphaned(main, viz_project):
    connected = {end for edge in main["edges"] for end in (edge["source"], edge["target"])}
    assert [node["name"] for node in _datasets(main) if node["id"] not in connected] == []
    # Every catalog entry (a name or a factory pattern) must be some pipeline's dataset.
    bootstrap_project(viz_project)
    with KedroSession.create(project_path=viz_project, env=ENV) as session:
        catalog = session.load_context().config_loader["catalog"]  # with the project's own resolvers
    resolver = CatalogConfigResolver(catalog, default_runtime_patterns={})
    names = {node["name"] for node in _datasets(main)}
    used = names | {resolver.match_dataset_pattern(name) for name in names}
    assert [entry for entry in catalog if entry not in used and not CATCH_ALL_PATTERN.fullmatch(entry)] == []


def test_every_dataset_opens_and_previews_show(main, viz_api):
    # A dataset whose metadata cannot be served (e.g. a preview that cannot be serialised) fails in the UI.
    failed = {}
    for node in _datasets(main):
        try:
            viz_api(f"nodes/{node['id']}")
        except urllib.error.HTTPError as error:
            failed[node["name"]] = error.code
    assert failed == {}, "kedro-viz cannot show these datasets (see test-artifacts/kedro-viz/server.log)"
    ids = {node["name"]: node["id"] for node in _datasets(main)}
    previews = {name: viz_api(f"nodes/{ids[name]}") for name in PREVIEW_TYPES}
    assert {name: metadata.get("preview_type") for name, metadata in previews.items()} == PREVIEW_TYPES
    assert {"model", "domain", "metric", "value"} <= set(previews["calibration_metrics_table"]["preview"]["columns"])
    assert "base" in json.loads(previews["calibration_metrics_summary"]["preview"])
    assert base64.b64decode(previews["layer_profiles_figure"]["preview"]).startswith(b"\x89PNG")


class _Graph(HTMLParser):
    """The flowchart of a rendered kedro-viz page: its nodes and layer bands (top down).

    ``nodes`` maps kedro-viz ids (as in the API) to node types; ``names`` are the node labels as the graph shows
    them: a node by its own name (without namespace), a dataset or a group by its full name.
    """

    def __init__(self, html: str):
        super().__init__()
        self.nodes: dict[str, str] = {}
        self.names: set[str] = set()
        self.layers: list[str] = []
        self._in_label = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "pipeline-node" in classes:
            self.nodes[attributes["data-id"]] = attributes["data-node-type"]
        elif "pipeline-node__text" in classes:
            self._in_label = True
        elif "pipeline-layer-name" in classes:
            self.layers.append(attributes["data-id"].removeprefix("layer-label--"))

    def handle_data(self, data: str) -> None:
        if self._in_label:
            self.names.add(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_label = False  # a label's <text> holds nothing but its text


def _render(chromium: str, url: str, screenshot: Path, profile: Path, *flags: str) -> _Graph:
    """Open ``url`` in headless Chromium with a fresh profile; screenshot it and parse its final DOM."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        *DUMP_DOM_FLAGS,
        *flags,
        f"--user-data-dir={profile}",
        f"--screenshot={screenshot}",
    ]
    browser = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True, timeout=300)
    assert browser.returncode == 0, f"chromium failed on {url}:\n{browser.stderr[-3000:]}"
    assert screenshot.stat().st_size > 0
    return _Graph(browser.stdout)


def _top_level_namespaces(api: dict) -> set[str]:
    return {name for name in api["modular_pipelines"] if name != "__root__" and "." not in name}


def _check_collapsed_page(graph: _Graph, api: dict) -> None:
    """Each namespace is one group, no namespaced node shows outside it, and layer bands run raw to reporting."""
    assert {node_id for node_id, kind in graph.nodes.items() if kind == "modularPipeline"} == _top_level_namespaces(api)
    namespaced = {node["id"] for node in api["nodes"] if node["type"] == "task" and node["modular_pipelines"]}
    assert namespaced and not namespaced & set(graph.nodes), "namespaced nodes shown outside their group"
    shown = {node["layer"] for node in _datasets(api) if node["id"] in graph.nodes}  # a group hides its inner ones
    assert graph.layers == [layer for layer in LAYERS if layer in shown]


def test_page_shows_each_namespace_as_one_group(chromium, viz_url, main, tmp_path):
    graph = _render(chromium, viz_url, ARTIFACTS / "__default__.png", tmp_path / "profile")
    assert graph.names >= VARIANTS
    _check_collapsed_page(graph, main)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_page_renders_pipeline(pipeline, chromium, viz_url, viz_api, tmp_path):
    graph = _render(
        chromium,
        f"{viz_url}/?pid={pipeline}&expandAllPipelines=true",
        ARTIFACTS / f"{pipeline}.png",
        tmp_path / "profile",
    )
    api = viz_api(f"pipelines/{pipeline}")
    members = [node for node in api["nodes"] if pipeline in node["pipelines"]]
    assert set(EXPECTED_ON_PAGE[pipeline]) <= graph.names
    assert [node["name"] for node in members if node["type"] == "task" and node["id"] not in graph.nodes] == []
    # A band for each layer of the pipeline's datasets. kedro-viz orders bands by data flow alone, so layers with
    # none between them (synergy's prompts in 02_intermediate, its models in 06_models) come in either order.
    layers = {node["layer"] for node in members if node["type"] == "data" and node["layer"]}
    assert sorted(graph.layers) == sorted(layers)


def test_static_site_builds_with_previews_and_opens_from_disk(chromium, viz_project, main, tmp_path):
    site = viz_project / "build"
    shutil.rmtree(site, ignore_errors=True)
    build = subprocess.run(
        _kedro("viz", "build", "--include-previews"),
        cwd=viz_project,
        # `kedro viz build` has no --env option; Kedro reads the environment from KEDRO_ENV instead.
        env=_kedro_environment() | {"KEDRO_ENV": ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    (ARTIFACTS / "build.log").write_text(build.stdout + build.stderr)
    # `kedro viz build` prints a failure (e.g. a preview it cannot serialise) and still exits 0: check what it wrote.
    assert build.returncode == 0 and (site / "index.html").is_file(), "see test-artifacts/kedro-viz/build.log"
    written = {path.name for path in (site / "api" / "nodes").iterdir()}
    assert [node["name"] for node in main["nodes"] if node["id"] not in written] == []
    # Opened as files, with no server: Chromium lets the page read its api/ folder only with this flag.
    graph = _render(
        chromium,
        (site / "index.html").as_uri(),
        ARTIFACTS / "static-site.png",
        tmp_path / "profile",
        "--allow-file-access-from-files",
    )
    _check_collapsed_page(graph, main)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """Playwright driving the system Chromium (``executable_path``), so no browser of Playwright's is downloaded."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _saved_file(project: Path, dataset: str) -> Path:
    """The file that the catalog loads ``dataset`` from: for a versioned dataset, its latest version's."""
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=ENV) as session:
        context = session.load_context()
        entry = context.config_loader["catalog"][dataset]
        path = project / entry["filepath"]
        return path / resolve_version(context.catalog, dataset) / path.name if entry.get("versioned") else path


def test_clicking_a_dataset_opens_its_preview(browser, viz_url, viz_api, viz_project):
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(UI_TIMEOUT_MS)
    # The feature tour would cover part of the flowchart; a user who has closed it has this setting stored.
    page.add_init_script("localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false}))")
    page.goto(f"{viz_url}/?pid=comparison&expandAllPipelines=true")
    # Every task and dataset of the pipeline under its name, as one sees it: parameters are hidden by default, and
    # the expanded namespace shows its members instead of its group.
    api = viz_api("pipelines/comparison")
    shown = sorted(
        node["name"] for node in api["nodes"] if "comparison" in node["pipelines"] and node["type"] in {"task", "data"}
    )
    labels = page.locator(".pipeline-node__text").filter(visible=True)
    expect(labels).to_have_count(len(shown), timeout=UI_TIMEOUT_MS)
    assert sorted(labels.all_text_contents()) == shown
    panel = page.locator(".pipeline-metadata--visible")
    title = panel.locator(".pipeline-metadata__title")

    def open_panel(dataset: str) -> None:
        page.locator(".pipeline-node").filter(has=page.get_by_text(dataset, exact=True)).click()
        expect(title).to_have_text(dataset, timeout=UI_TIMEOUT_MS)

    open_panel("calibration_metrics_table")
    rows = panel.locator(".preview-table__row")
    # The preview arrives with the node's metadata, requested on the click.
    expect(rows).to_have_count(PREVIEW_ROWS, timeout=UI_TIMEOUT_MS)
    page.screenshot(path=ARTIFACTS / "calibration_metrics_table-preview.png")
    headers = panel.locator(".preview-table__header").all_text_contents()
    table = pd.DataFrame(
        [row.locator(".preview-table__data").all_text_contents() for row in rows.all()], columns=headers
    )
    expected = pd.read_parquet(_saved_file(viz_project, "calibration_metrics_table")).head(PREVIEW_ROWS)
    assert {"model", "domain", "metric", "value"} <= set(headers) and headers == list(expected.columns)
    text_columns = ["model", "method", "domain", "metric"]
    assert table[text_columns].values.tolist() == expected[text_columns].values.tolist()
    values = [math.nan if cell == "null" else float(cell) for cell in table["value"]]  # NaN travels as JSON null
    assert values == pytest.approx(expected["value"].tolist(), nan_ok=True)

    # Selecting a node zooms the flowchart onto it, which leaves the figure's node under the sidebar; closing the
    # panel, as a user would, brings it back into view.
    panel.locator(".pipeline-metadata__close-button").click()
    open_panel("layer_profiles_figure")
    image = panel.locator("img.pipeline-metadata__plot-image")
    expect(image).to_have_js_property("complete", True, timeout=UI_TIMEOUT_MS)
    page.screenshot(path=ARTIFACTS / "layer_profiles_figure-preview.png")
    png = _saved_file(viz_project, "layer_profiles_figure").read_bytes()
    assert image.get_attribute("src") == "data:image/png;base64," + base64.b64encode(png).decode()
    # Decoded by the browser at the figure's own size (PNG's IHDR chunk: width and height at bytes 16-24).
    assert image.evaluate("image => [image.naturalWidth, image.naturalHeight]") == list(
        struct.unpack(">II", png[16:24])
    )
