"""Generate the Grafana dashboard shipped in the chart (charts/phasegate/dashboards/).

Built with grafana-foundation-sdk (a development dependency: the test extra), never edited
by hand::

    .venv/bin/python scripts/grafana_dashboard.py           # write the chart's copy
    .venv/bin/python scripts/grafana_dashboard.py --stdout  # print it

Every panel reads the operator's own metrics (docs/metrics.md). ``$namespace`` and
``$rollout`` are multi-value variables matched as regular expressions (All: ``.*``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

TARGET = Path(__file__).resolve().parents[1] / "charts/phasegate/dashboards/phasegate.json"
UID = "phasegate-operator"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTED = 'namespace=~"$namespace",rollout=~"$rollout"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """One panel: its title, what it shows, its kind, its unit and its queries."""

    title: str
    description: str
    kind: str  # timeseries | stat | table
    unit: str
    queries: tuple[Query, ...]
    width: int = 12


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    (
        "Rollouts",
        (
            PanelSpec(
                "Rollouts by state",
                "How many rollouts the operator knows in each state.",
                "stat",
                "none",
                (Query("sum by (state) (phasegate_rollouts)", "{{state}}"),),
                width=24,
            ),
            PanelSpec(
                "Canary weight",
                "The canary weight read back from the route, per rollout.",
                "timeseries",
                "percent",
                (Query(f"phasegate_canary_weight{{{SELECTED}}}", "{{namespace}}/{{rollout}}"),),
            ),
            PanelSpec(
                "Decisions",
                "Decisions taken per 5 minutes, by action (Advance, Hold, Rollback, ...).",
                "timeseries",
                "none",
                (Query("sum by (action) (increase(phasegate_decisions_total[5m]))", "{{action}}"),),
            ),
            PanelSpec(
                "Latest value of each rule, with its threshold",
                "Every criterion and trigger of each rollout's current phase: the value as "
                "judged (relative difference for compare, spread for consistency) and its "
                "threshold (dashed in the legend: bound).",
                "timeseries",
                "short",
                (
                    Query(
                        f"phasegate_metric_value{{{SELECTED}}}",
                        "{{rollout}} {{rule}} {{metric}}",
                    ),
                    Query(
                        f"phasegate_metric_threshold{{{SELECTED}}}",
                        "{{rollout}} {{rule}} {{bound}}",
                    ),
                ),
                width=24,
            ),
            PanelSpec(
                "Rule verdicts",
                "The latest verdict of each rule of the current phase.",
                "table",
                "none",
                (Query(f"phasegate_rule_verdict{{{SELECTED}}} == 1", "{{rule}} {{verdict}}"),),
                width=24,
            ),
        ),
    ),
    (
        "Operator",
        (
            PanelSpec(
                "Evaluation lag (p99)",
                "How late evaluations start against their schedule.",
                "timeseries",
                "s",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le) "
                        "(rate(phasegate_evaluation_lag_seconds_bucket[5m])))",
                        "p99",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Evaluations and status writes",
                "Evaluations per second, and the few that changed what users see.",
                "timeseries",
                "ops",
                (
                    Query("sum(rate(phasegate_evaluations_total[5m]))", "evaluations"),
                    Query("sum(rate(phasegate_status_writes_total[5m]))", "status writes"),
                ),
                width=8,
            ),
            PanelSpec(
                "Prometheus query latency (p99)",
                "Time Prometheus took to answer the rules' queries.",
                "timeseries",
                "s",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le) "
                        "(rate(phasegate_query_duration_seconds_bucket[5m])))",
                        "p99",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Prometheus query errors",
                "Queries that failed per second, by outcome (Rejected, Unavailable, ...).",
                "timeseries",
                "ops",
                (
                    Query(
                        "sum by (outcome) (rate(phasegate_query_errors_total[5m]))", "{{outcome}}"
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Kubernetes API latency (p99)",
                "Time the API server took to answer the operator, by verb.",
                "timeseries",
                "s",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le, verb) "
                        "(rate(phasegate_api_request_duration_seconds_bucket[5m])))",
                        "{{verb}}",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Kubernetes API errors",
                "Calls the API server refused or did not answer, per second, by verb and code.",
                "timeseries",
                "ops",
                (
                    Query(
                        "sum by (verb, code) (rate(phasegate_api_errors_total[5m]))",
                        "{{verb}} {{code}}",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Notifications delivered",
                "Notifications delivered per 5 minutes, by service.",
                "timeseries",
                "none",
                (
                    Query(
                        "sum by (service) (increase(phasegate_notifications_sent_total[5m]))",
                        "{{service}}",
                    ),
                ),
                width=24,
            ),
        ),
    ),
)


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .range()
    )


def _panel(spec: PanelSpec) -> timeseries.Panel | stat.Panel | table.Panel:
    builder: timeseries.Panel | stat.Panel | table.Panel
    if spec.kind == "stat":
        builder = stat.Panel()
    elif spec.kind == "table":
        builder = table.Panel()
    else:
        builder = (
            timeseries.Panel()
            .line_width(1.5)
            .legend(
                common_builders.VizLegendOptions()
                .show_legend(True)
                .display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM)
                .calcs(["lastNotNull", "max"])
            )
        )
    builder.title(spec.title).description(spec.description).unit(spec.unit)
    builder.datasource(DATASOURCE).height(8).span(spec.width)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        builder.with_target(_target(query, ref))
    return builder


def _variable(name: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(name)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def build() -> dict[str, object]:
    """The dashboard as Grafana's JSON model."""
    board = (
        dash.Dashboard("phasegate")
        .uid(UID)
        .description("The phasegate operator and its rollouts, from the operator's own metrics.")
        .tags(["phasegate", "progressive-delivery"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(_variable("namespace", "label_values(phasegate_canary_weight, namespace)"))
        .with_variable(
            _variable(
                "rollout",
                'label_values(phasegate_canary_weight{namespace=~"$namespace"}, rollout)',
            )
        )
    )
    for title, panels in ROWS:
        board.with_row(dash.Row(title))
        for spec in panels:
            board.with_panel(_panel(spec))
    encoded = json.dumps(board.build(), cls=JSONEncoder, sort_keys=True)
    return dict(json.loads(encoded))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
    else:
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        TARGET.write_text(text)
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
