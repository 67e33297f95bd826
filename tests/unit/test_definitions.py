"""The Dagster definitions load (as `dagster dev` would, via workspace.yaml) and form the expected graph."""

import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.definitions import defs
from quality.rules import RULES_FILE, load_rules

PROJECT = Path(__file__).resolve().parents[2]

# The asset graph, as reviewed: a change here is a change of the pipeline's shape.
EXPECTED_GRAPH = {
    "bronze/cdc_customers": [],
    "bronze/cdc_inventory": [],
    "bronze/cdc_order_items": [],
    "bronze/cdc_orders": [],
    "bronze/cdc_payments": [],
    "bronze/cdc_products": [],
    "bronze/cdc_shipments": [],
    "bronze/cdc_transactions": [],
    "bronze/events": [],
    "silver/int_customers_current": ["silver/int_customers_history"],
    "silver/int_customers_history": ["silver/stg_shop__customers"],
    "silver/int_inventory_current": ["silver/int_inventory_history"],
    "silver/int_inventory_history": ["silver/stg_shop__inventory"],
    "silver/int_order_items_current": ["silver/int_order_items_history"],
    "silver/int_order_items_history": ["silver/stg_shop__order_items"],
    "silver/int_orders_current": ["silver/int_orders_history"],
    "silver/int_orders_history": ["silver/stg_shop__orders"],
    "silver/int_payments_current": ["silver/int_payments_history"],
    "silver/int_payments_history": ["silver/stg_shop__payments"],
    "silver/int_products_current": ["silver/int_products_history"],
    "silver/int_products_history": ["silver/stg_shop__products"],
    "silver/int_shipments_current": ["silver/int_shipments_history"],
    "silver/int_shipments_history": ["silver/stg_shop__shipments"],
    "silver/rejects": ["bronze/cdc_customers", "bronze/cdc_inventory", "bronze/cdc_order_items", "bronze/cdc_orders",
                       "bronze/cdc_payments", "bronze/cdc_products", "bronze/cdc_shipments"],
    "silver/stg_events__events": ["bronze/events"],
    "silver/stg_shop__customers": ["bronze/cdc_customers", "silver/rejects"],
    "silver/stg_shop__inventory": ["bronze/cdc_inventory", "silver/rejects"],
    "silver/stg_shop__order_items": ["bronze/cdc_order_items", "silver/rejects"],
    "silver/stg_shop__orders": ["bronze/cdc_orders", "silver/rejects"],
    "silver/stg_shop__payments": ["bronze/cdc_payments", "silver/rejects"],
    "silver/stg_shop__products": ["bronze/cdc_products", "silver/rejects"],
    "silver/stg_shop__shipments": ["bronze/cdc_shipments", "silver/rejects"],
    "gold/agg_daily_funnel": ["silver/stg_events__events"],
    "gold/agg_daily_sales": ["silver/int_orders_current", "silver/int_orders_history"],
    "gold/agg_hourly_revenue": ["silver/int_orders_current", "silver/int_orders_history"],
    "gold/customer_features": ["silver/int_customers_current", "silver/int_orders_current"],
    "gold/dim_customers": ["silver/int_customers_history"],
    "gold/dim_date": [],
    "gold/dim_products": ["silver/int_products_current"],
    "gold/fct_order_items": ["silver/int_order_items_current", "silver/int_order_items_history", "silver/int_orders_current",
                             "silver/int_orders_history"],
    "gold/fct_orders": ["silver/int_orders_history"],
}


def test_asset_graph_matches_the_reviewed_snapshot():
    graph = defs.resolve_asset_graph()
    actual = {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.materializable_asset_keys
    }
    assert actual == EXPECTED_GRAPH


def test_every_asset_has_quality_rules():
    tables = {rule.table for rule in load_rules(RULES_FILE)}
    graph = defs.resolve_asset_graph()
    missing = sorted(".".join(key.path) for key in graph.materializable_asset_keys if ".".join(key.path) not in tables)
    assert missing == []


def test_every_asset_is_described_owned_and_grouped_by_layer():
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.description, key
        assert node.owners, key
        assert node.group_name == key.path[0], key


def test_workspace_yaml_points_at_these_definitions():
    workspace = yaml.safe_load((PROJECT / "workspace.yaml").read_text())
    target = workspace["load_from"][0]["python_module"]
    assert (target["module_name"], target["attribute"]) == ("pipelines.definitions", "defs")


def test_dagster_cli_loads_the_workspace():
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_definitions_load_under_dagster_dev_without_the_venv_on_path():
    # `dagster dev` sets DAGSTER_IS_DEV_CLI, which makes dagster-dbt re-parse the project at load time
    python = Path(sys.executable)
    done = subprocess.run(
        [str(python), "-c", "from pipelines.definitions import defs; print(len(list(defs.assets)))"],
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", "DAGSTER_IS_DEV_CLI": "1", "HOME": str(Path.home())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_asset_has_a_gx_suite_check_and_dbt_waits_for_those_of_bronze():
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key for key in graph.asset_check_keys if key.name == "gx_suite"}
    assert checked == set(graph.get_all_asset_keys())
    # the models' suites run inside `dbt build` (their gx_suite dbt test), between a model and its children
    dbt_op = next(a for a in defs.assets if a.node_def.name == "lakehouse_dbt_models")
    assert {k.asset_key for k in dbt_op.check_keys if k.name == "gx_suite"} == set(dbt_op.keys)
    # a bronze table whose ERROR rule failed stops the dbt op: it waits for the bronze checks
    job = defs.resolve_job_def("lakehouse_all_assets")
    upstream = {output.node_name for outputs in job.graph.dependency_structure.input_to_upstream_outputs_for_node(
        "lakehouse_dbt_models").values() for output in outputs}
    assert {f"bronze__{t}_gx_suite" for t in ("cdc_orders", "cdc_customers", "events")} <= upstream


def test_every_asset_is_named_as_analysts_query_it():
    # the UI's "Storage" field: the view `lakehouse query` and `lakehouse shell` open for the table
    for spec in defs.resolve_all_asset_specs():
        layer, table = spec.key.path
        assert spec.metadata.get("dagster/table_name") == f"{layer}.{table}", spec.key
