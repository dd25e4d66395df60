"""The Grafana dashboards in ``dashboards/`` only use what suptrace emits (SPEC §7).

The reference is not a list written by hand: a node with the Prometheus exporter
on (``prometheus=``) runs a scenario that produces all nine pinned metrics, and its
``/metrics`` endpoint is scraped and parsed. Every PromQL expression of every
dashboard (panel targets and template variable queries) is taken apart into
metric names and label names, and each must be one the scrape exposes, for that
metric. Legends and data links may only name labels of the panel's metrics;
TraceQL queries and Jaeger searches only span attributes the bridge sets. The
ready stack in ``dashboards/stack`` is checked for consistency with the
dashboards (provisioned datasource uids, the dashboards directory it mounts) and
with ``promtool check config`` when the Prometheus package is installed.

The same scenario, with a real Prometheus scraping the node, runs every query in
``test_dashboards_prometheus.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import suptrace
from examples.dodos import world
from suptrace import NOREPLY, ChildSpec, GenServer, Supervisor
from suptrace.node.parts import current_parts
from suptrace.observers.otel.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
STACK = DASHBOARDS / "stack"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))

#: Labels the scraper adds to every series: Prometheus' target labels, or the
#: collector's translation of service.name / service.instance.id.
TARGET_LABELS = frozenset({"job", "instance"})
#: What Grafana substitutes for its built-in interval variables, in the tests.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "5m"}
#: Datasource plugin types the dashboards may use (each provisioned by the stack).
DATASOURCE_TYPES = ("prometheus", "tempo", "jaeger")

#: PromQL functions and aggregation operators the dashboards may call.
PROMQL_FUNCTIONS = frozenset(
    {
        "abs", "absent", "avg", "avg_over_time", "bottomk", "ceil", "clamp_max", "clamp_min",
        "count", "count_over_time", "delta", "deriv", "floor", "group", "histogram_quantile",
        "idelta", "increase", "irate", "label_replace", "max", "max_over_time", "min",
        "min_over_time", "quantile", "quantile_over_time", "rate", "resets", "round",
        "scalar", "sort", "sort_desc", "stddev", "sum", "sum_over_time", "time", "topk",
        "vector",
    }
)  # fmt: skip
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip


# -- the scenario: every pinned metric, twice --------------------------------------------------


class Oracle(GenServer):
    """Answers questions; never answers ``"ponder"`` (a call timeout); ``"riddle"`` crashes it."""

    async def init(self) -> None:
        self.asked = 0

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request == "ponder":
            return NOREPLY
        if request == "riddle":
            raise RuntimeError("the oracle has no answer")
        self.asked += 1
        return self.asked

    async def handle_cast(self, msg: Any) -> None:
        self.asked += 1


async def hoard() -> None:
    """Keeps everything it is sent in its mailbox (a mailbox that only grows)."""
    await suptrace.receive(lambda m: m == "enough")


class SupervisionEvents:
    """Waits for given supervision events (no polling: an event handler feeds a queue)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[suptrace.TraceEvent] = asyncio.Queue()
        self.stop = suptrace.add_event_handler(
            self.queue.put_nowait, kinds=["restart", "not_restarted"]
        )

    async def until(self, kind: str, supervisor: str, child_id: str) -> None:
        while True:
            event = await asyncio.wait_for(self.queue.get(), 10)
            data = event.data
            if (
                event.kind == kind
                and data.get("supervisor") == supervisor
                and data.get("child_id") == child_id
            ):
                return


async def start_world() -> None:
    """``world:start()`` of examples/dodos, under a top supervisor that tolerates the
    two restarts of ``cockroaches_sup`` the scenario causes; and a supervised oracle."""
    children = [
        ChildSpec(
            id="dodos_sup",
            start=(world.start_animals_sup, ("dodos",)),
            restart="transient",
            type="supervisor",
        ),
        ChildSpec(
            id="cockroaches_sup",
            start=(world.start_animals_sup, ("cockroaches",)),
            restart="permanent",
            type="supervisor",
        ),
    ]
    await Supervisor.start_link(children, name="world_sup", intensity=10, period=60)
    oracle = ChildSpec(id="oracle", start=(Oracle.start_link, (), {"name": "oracle"}))
    await Supervisor.start_link([oracle], name="temple", intensity=10, period=60)
    suptrace.spawn(hoard, name="hoarder")


async def one_round(events: SupervisionEvents, last: bool) -> None:
    """Calls (answered, timed out, crashing the server), casts, sends, restarts and an
    intensity breach; the last round also drives the dodos to extinction."""
    await world.add_dodos(3)
    await world.add_cockroaches(7)
    for _ in range(3):
        await suptrace.call("oracle", "question")
    suptrace.cast("oracle", "offering")
    with pytest.raises(suptrace.CallTimeout):
        await suptrace.call("oracle", "ponder", timeout=0.05)
    with pytest.raises(suptrace.CallExit):
        await suptrace.call("oracle", "riddle")
    await events.until("restart", "temple", "oracle")
    for i in range(3):
        suptrace.send("hoarder", ("trinket", i))
    # 7 cockroaches killed at once: 5 restarts in a second, then the breach;
    # world_sup restarts the (permanent) cockroaches supervisor.
    await world.kill_cockroaches()
    await events.until("restart", "world_sup", "cockroaches_sup")
    if last:
        # 6 dodos: the same breach, but the transient dodos supervisor stays dead.
        await world.kill_dodos()
        await events.until("not_restarted", "world_sup", "dodos_sup")


async def scenario(between_rounds: Callable[[], Awaitable[None]]) -> None:
    """The dodos world plus an oracle, in two rounds so every counter grows between them."""
    suptrace.trap_exit(True)
    events = SupervisionEvents()
    try:
        await start_world()
        await one_round(events, last=False)
        await between_rounds()
        await one_round(events, last=True)
    finally:
        events.stop()


async def run_node(main: Callable[[], Awaitable[Any]]) -> Any:
    async with suptrace.Node(
        "dashboards", prometheus=("127.0.0.1", 0), control=False, log_reports=False
    ) as node:
        return await node.run_root(main)


def quiet_telemetry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The node's embedded OTLP file goes to tmp_path, and nothing is sent to a collector."""
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SUPTRACE_OTLP_FILE", str(tmp_path / "node.otlp.jsonl"))


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
    return text


# -- what the exporter exposes -----------------------------------------------------------------


def exposition(text: str) -> dict[str, set[str]]:
    """Sample names of the suptrace instruments in a /metrics page, with their label names."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("suptrace_"):
            continue  # target_info and the like are not suptrace instruments
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def family_of(sample: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Run the scenario on a node with ``prometheus=`` and scrape its /metrics once."""
    tmp = tmp_path_factory.mktemp("exposition")
    with pytest.MonkeyPatch.context() as mp:
        quiet_telemetry(mp, tmp)

        async def main() -> str:
            port = current_parts("test").telemetry.prometheus_port

            async def nothing() -> None:
                pass

            await scenario(nothing)
            return await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")

        text = asyncio.run(asyncio.wait_for(run_node(main), 60))
    return exposition(text)


# -- taking dashboards apart -------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = board.get("templating", {}).get("list", [])
    return found


def variable_query(var: dict[str, Any]) -> str:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return str(query or var.get("definition", ""))


def prometheus_targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == "prometheus":
                yield panel, target


def datasource_types(board: dict[str, Any]) -> dict[str, str]:
    """Datasource variable name -> plugin type."""
    return {v["name"]: v["query"] for v in variables(board) if v.get("type") == "datasource"}


_VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def used_variables(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VAR.findall(text)}


def substitute(text: str, values: dict[str, str]) -> str:
    """Grafana's variable interpolation (raw format), for the tests."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values[name]

    return _VAR.sub(one, text)


def static_values(board: dict[str, Any]) -> dict[str, str]:
    """Every variable a query may use, as a regex matching anything (query variables)
    or its current value (custom, textbox, constant)."""
    values = dict(BUILTINS)
    for var in variables(board):
        kind = var.get("type")
        if kind == "query":
            values[var["name"]] = ".*"
        elif kind in ("custom", "textbox", "constant"):
            current = var.get("current", {}).get("value") or var.get("query")
            values[var["name"]] = str(current)
        elif kind == "datasource":
            values[var["name"]] = str(var.get("current", {}).get("value", ""))
    return values


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*(?:,|$)')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.])", re.IGNORECASE)
_IDENT = re.compile(r"[A-Za-z_:][\w:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.DOTALL)


class PromQL:
    """Metric names and label names of one PromQL expression (a lexical reading that is
    enough for dashboard queries; Prometheus itself parses them in the end-to-end test)."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        #: metric name -> labels in its matchers; "" for selectors without a metric name.
        self.matchers: dict[str, set[str]] = {}
        self.grouping: set[str] = set()
        self.functions: set[str] = set()
        self.unknown: set[str] = set()
        rest = expr

        def selector(m: re.Match[str]) -> str:
            name = m.group(1) or ""
            body = m.group(2)
            labels = self.matchers.setdefault(name, set())
            pos = 0
            while body[pos:].strip():
                mm = _MATCHER.match(body, pos)
                if mm is None:
                    raise AssertionError(f"cannot read the label matchers {{{body}}} in {expr!r}")
                labels.add(mm.group(1))
                pos = mm.end()
            return f" {name} "

        rest = _SELECTOR.sub(selector, rest)
        for _, labels in _GROUPING.findall(rest):
            self.grouping.update(x.strip() for x in labels.split(",") if x.strip())
        rest = _GROUPING.sub(" ", rest)
        rest = _STRING.sub(" ", _RANGE.sub(" ", rest))
        rest = _NUMBER.sub(" ", rest)
        for m in _IDENT.finditer(rest):
            word = m.group(0)
            follows = rest[m.end() :].lstrip()
            if follows.startswith("("):
                self.functions.add(word)
            elif word.lower() in PROMQL_KEYWORDS:
                continue
            else:
                self.matchers.setdefault(word, set())

    @property
    def metrics(self) -> set[str]:
        return {name for name in self.matchers if name}

    @property
    def labels(self) -> set[str]:
        found = set(self.grouping)
        for labels in self.matchers.values():
            found |= labels
        return found


def label_values(var: dict[str, Any]) -> tuple[str, str]:
    """The (selector, label) of a ``label_values(selector, label)`` variable query."""
    text = variable_query(var)
    m = _LABEL_VALUES.match(text)
    assert m is not None, f"variable {var['name']}: not a label_values() query: {text!r}"
    selector, label = m.group(1), m.group(2)
    assert selector, f"variable {var['name']}: label_values() without a metric"
    return selector.strip(), label


def expressions(board: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend format) of every panel target and every variable query;
    a ``label_values(selector, label)`` query becomes ``group by (label) (selector)``."""
    for panel, target in prometheus_targets(board):
        yield panel["title"], target["expr"], target.get("legendFormat", "")
    for var in variables(board):
        if var.get("type") != "query":
            continue
        selector, label = label_values(var)
        yield f"variable {var['name']}", f"group by ({label}) ({selector})", ""


def label_refs(text: str) -> set[str]:
    """Labels a legend format or a data link refers to."""
    found = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))
    found |= set(re.findall(r"\$\{__field\.labels\.(\w+)", text))
    found |= set(re.findall(r"\$\{__data\.fields\.(\w+)", text))
    return found


def panel_links(panel: dict[str, Any]) -> Iterator[dict[str, Any]]:
    field_config = panel.get("fieldConfig", {})
    yield from field_config.get("defaults", {}).get("links", [])
    for override in field_config.get("overrides", []):
        for prop in override.get("properties", []):
            if prop.get("id") == "links":
                yield from prop.get("value", [])


def traceql_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == "tempo":
                assert target.get("queryType") == "traceql", panel["title"]
                yield panel["title"], target["query"]


def jaeger_urls(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for link in board.get("links", []):
        if link.get("type") == "link":
            yield f"dashboard link {link['title']!r}", link["url"]
    for panel in all_panels(board):
        for link in panel_links(panel):
            yield f"panel {panel['title']!r}", link["url"]


def bridge_source() -> str:
    """The source that names span and resource attributes (the bridge and the exporters)."""
    here = ROOT / "suptrace" / "observers" / "otel"
    return "".join(path.read_text() for path in sorted(here.glob("*.py")))


def attribute_emitted(name: str, source: str) -> bool:
    return f'"{name}"' in source


# -- the tests ---------------------------------------------------------------------------------


def test_there_are_dashboards() -> None:
    names = {p.name for p in DASHBOARD_FILES}
    assert "suptrace-overview.json" in names, names


def test_the_scrape_exposes_each_pinned_metric_once(exposed: dict[str, set[str]]) -> None:
    """The exporter's names: dots become underscores, the unit ``s`` adds ``_seconds``,
    counters get ``_total``, histograms ``_bucket``/``_count``/``_sum``; units in braces
    (``{restart}``) add nothing. Every suptrace family comes from one pinned instrument."""
    families = {family_of(sample) for sample in exposed}
    for family in families:
        base = family.removesuffix("_seconds")
        matches = [n for n in METRIC_NAMES if n.replace(".", "_") == base]
        assert len(matches) == 1, f"{family} is not one of the pinned instruments {METRIC_NAMES}"
    for name in METRIC_NAMES:
        base = name.replace(".", "_")
        assert base in families or f"{base}_seconds" in families, (
            f"the scenario did not produce {name}: {sorted(families)}"
        )
    for name in ("suptrace_message_duration_seconds", "suptrace_call_duration_seconds"):
        assert "le" in exposed[f"{name}_bucket"]
        assert "error_type" in exposed[f"{name}_count"], "no failure in the scenario"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = load(path)
    assert board["schemaVersion"] == 39
    assert board["uid"] == path.stem and len(board["uid"]) <= 40
    assert "suptrace" in board["tags"]
    assert board.get("id") is None, "an exported dashboard carries no database id"
    ids = [p["id"] for p in all_panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']!r} has no query"
            assert panel.get("description"), f"{panel['title']!r} has no description"


def test_dashboard_uids_are_unique() -> None:
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_datasources_are_variables_of_the_right_type(path: Path) -> None:
    board = load(path)
    types = datasource_types(board)
    assert set(types.values()) <= set(DATASOURCE_TYPES), types
    for name, kind in types.items():
        assert name == f"DS_{kind.upper()}"
    used: set[str] = set()

    def check(where: str, ds: dict[str, Any] | None) -> None:
        if ds is None:
            return
        if ds.get("type") == "grafana":
            return
        m = re.fullmatch(r"\$\{(\w+)\}", ds.get("uid", ""))
        assert m is not None, f"{where}: datasource {ds} is not a datasource variable"
        assert types.get(m.group(1)) == ds["type"], f"{where}: {ds} does not match {types}"
        used.add(m.group(1))

    for panel in all_panels(board):
        if panel["type"] == "row":
            continue
        check(panel["title"], panel.get("datasource"))
        for target in panel.get("targets", []):
            check(panel["title"], target.get("datasource"))
    for var in variables(board):
        check(f"variable {var['name']}", var.get("datasource"))
    assert used == set(types), f"declared but unused datasource variables: {set(types) - used}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_queries_use_only_exposed_metrics_and_labels(
    path: Path, exposed: dict[str, set[str]]
) -> None:
    board = load(path)
    values = static_values(board)
    checked = 0
    for where, raw, legend in expressions(board):
        unknown_vars = used_variables(raw) - set(values)
        assert not unknown_vars, f"{where}: undefined variables {unknown_vars} in {raw!r}"
        q = PromQL(substitute(raw, values))
        assert not q.functions - PROMQL_FUNCTIONS, f"{where}: {q.functions - PROMQL_FUNCTIONS}"
        assert q.metrics, f"{where}: no metric in {raw!r}"
        for metric in q.metrics:
            assert metric in exposed, (
                f"{where}: {metric} is not exposed by suptrace; known: {sorted(exposed)}"
            )
        allowed = set(TARGET_LABELS)
        for metric in q.metrics:
            allowed |= exposed[metric]
        for metric, labels in q.matchers.items():
            if metric:
                bad = labels - exposed[metric] - TARGET_LABELS
                assert not bad, f"{where}: {metric} has no label(s) {bad}"
        bad = q.labels - allowed
        assert not bad, f"{where}: unknown label(s) {bad} in {raw!r}"
        bad = label_refs(legend) - allowed
        assert not bad, f"{where}: the legend names unknown label(s) {bad}"
        checked += 1
    assert checked


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_data_links_name_labels_of_their_panel(path: Path, exposed: dict[str, set[str]]) -> None:
    board = load(path)
    values = static_values(board)
    for panel in all_panels(board):
        links = list(panel_links(panel))
        if not links:
            continue
        allowed = set(TARGET_LABELS)
        for target in panel.get("targets", []):
            for metric in PromQL(substitute(target["expr"], values)).metrics:
                allowed |= exposed[metric]
        for link in links:
            refs = label_refs(link["url"]) | label_refs(link.get("title", ""))
            assert refs, f"{panel['title']!r}: a data link that depends on nothing"
            assert refs <= allowed, f"{panel['title']!r}: unknown labels {refs - allowed}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_traceql_and_jaeger_searches_use_emitted_attributes(path: Path) -> None:
    board = load(path)
    source = bridge_source()
    for where, query in traceql_queries(board):
        assert query.startswith("{") and query.endswith("}"), query
        assert 'span.messaging.system = "suptrace"' in query or 'name =~ "exit ' in query
        if 'name =~ "exit ' in query:
            assert 'f"exit {' in source, "the exit spans were renamed"
        attrs = re.findall(r"\b(?:span|resource)\.([a-z_][\w.]*)", query)
        assert attrs, where
        for attr in attrs:
            assert attribute_emitted(attr, source), f"{where}: {attr} is not emitted"
        assert "$service" in query
    for where, url in jaeger_urls(board):
        parsed = urllib.parse.urlsplit(url.replace("${jaeger_url}", "http://jaeger"))
        if parsed.path != "/search":
            continue
        params = urllib.parse.parse_qs(parsed.query)
        assert params["service"] == ["${service:percentencode}"], where
        tags = json.loads(re.sub(r"\$\{[^}]*\}", "X", params["tags"][0]))
        assert tags.get("error") == "true", where
        for attr in set(tags) - {"error"}:
            assert attribute_emitted(attr, source), f"{where}: {attr} is not emitted"
    for panel in all_panels(board):
        for target in panel.get("targets", []):
            if (target.get("datasource") or {}).get("type") == "jaeger":
                assert target["queryType"] == "search"
                assert target["service"] == "$service"
                assert target["tags"] == "error=true"


def test_every_dashboard_has_a_jaeger_error_search_link() -> None:
    for path in DASHBOARD_FILES:
        urls = [link["url"] for link in load(path)["links"] if link.get("type") == "link"]
        assert any("/search?service=" in u and "%22error%22%3A%22true%22" in u for u in urls), (
            path.name
        )


def test_overview_has_the_promised_panels() -> None:
    board = load(DASHBOARDS / "suptrace-overview.json")
    exprs = "\n".join(t["expr"] for _, t in prometheus_targets(board))
    for needed in (
        "rate(suptrace_process_restarts_total",
        "suptrace_supervisor_intensity_breaches_total",
        "sum by (suptrace_exit_reason) (rate(suptrace_process_exits_total",
        "suptrace_processes",
        "topk($topk, max by (suptrace_process_name) (suptrace_mailbox_size",
        "histogram_quantile(0.99, sum by (le) (rate(suptrace_message_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(suptrace_call_duration_seconds_bucket",
        "suptrace_call_timeouts_total",
        "rate(suptrace_messages_sent_total",
    ):
        assert needed in exprs, needed
    assert any(True for _ in traceql_queries(board))


# -- the stack ---------------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, str]:
    """uid -> type, read from the Grafana provisioning file (without a YAML library)."""
    text = (STACK / "grafana/provisioning/datasources/datasources.yaml").read_text()
    found: dict[str, str] = {}
    for block in re.split(r"\n\s*- name:", text)[1:]:
        uid = re.search(r"^\s*uid:\s*(\S+)", block, re.MULTILINE)
        kind = re.search(r"^\s*type:\s*(\S+)", block, re.MULTILINE)
        assert uid and kind, block
        found[uid.group(1)] = kind.group(1)
    return found


def test_dashboard_defaults_are_the_provisioned_datasources() -> None:
    provisioned = provisioned_datasources()
    assert sorted(provisioned.values()) == sorted(DATASOURCE_TYPES)
    for path in DASHBOARD_FILES:
        for var in variables(load(path)):
            if var.get("type") == "datasource":
                uid = var["current"]["value"]
                assert provisioned.get(uid) == var["query"], (path.name, var["name"])


def test_grafana_loads_this_directory() -> None:
    """compose.yaml mounts dashboards/ where the provider looks, and only dashboards
    are JSON there (Grafana loads every *.json under the path, recursively)."""
    compose = (STACK / "compose.yaml").read_text()
    provider = (STACK / "grafana/provisioning/dashboards/dashboards.yaml").read_text()
    path = re.search(r"^\s*path:\s*(\S+)", provider, re.MULTILINE)
    assert path is not None
    mount = re.search(r"^\s*-\s*\.\./?:(\S+?)(?::ro)?\s*$", compose, re.MULTILINE)
    assert mount is not None, "compose.yaml does not mount the dashboards directory"
    assert mount.group(1) == path.group(1)
    home = re.search(r"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH:\s*(\S+)", compose)
    assert home is not None
    assert home.group(1) == f"{path.group(1)}/suptrace-overview.json"
    stray = [p for p in DASHBOARDS.rglob("*.json") if p.parent != DASHBOARDS]
    assert not stray, f"JSON files Grafana would try to load as dashboards: {stray}"
    for local in re.findall(r"^\s*-\s*(\./[^:\s]+):", compose, re.MULTILINE):
        assert (STACK / local).exists(), local


def test_stack_files_parse_as_yaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    docs = {
        p.relative_to(STACK).as_posix(): yaml.safe_load(p.read_text())
        for p in STACK.rglob("*.y*ml")
    }
    compose = docs["compose.yaml"]
    assert set(compose["services"]) == {
        "otel-collector",
        "tempo",
        "jaeger",
        "prometheus",
        "grafana",
    }
    collector = docs["otel-collector.yaml"]
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines["traces"]["exporters"]) == {"otlp/tempo", "otlp/jaeger"}
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in collector[kind], f"{kind} {name} is used but not configured"
    scrape = docs["prometheus.yml"]["scrape_configs"][0]
    assert scrape["honor_labels"] is True  # job/instance come from the collector
    port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert scrape["static_configs"][0]["targets"] == [f"otel-collector:{port}"]


PROMTOOL = shutil.which("promtool") or (
    "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
)


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_promtool_accepts_the_prometheus_config() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(STACK / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
