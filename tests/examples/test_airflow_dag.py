"""The example Airflow DAG (examples/airflow/lookalike_dag.py) loads, runs hourly without
overlapping runs, and its task runs a `lookalike index --engine ray` command line that
the real CLI accepts, with the run's date in the manifest path.

Airflow is not installed beside Lookalike here (see tests/support/airflow_standin.py):
the DAG file is loaded against a stand-in of Airflow's import surface unless `airflow`
imports, in which case the real one is used."""

from __future__ import annotations

import importlib.util
import shlex
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer

from lookalike.cli import app
from tests.support.airflow_standin import airflow_standin

DAG_FILE = Path(__file__).parents[2] / "examples" / "airflow" / "lookalike_dag.py"


def load_dag(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    real = importlib.util.find_spec("airflow") is not None
    with nullcontext() if real else airflow_standin():
        spec = importlib.util.spec_from_file_location("lookalike_dag_under_test", DAG_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.dag


def rendered_command(dag: Any, ds: str) -> list[str]:
    task = dag.get_task("index")
    return shlex.split(task.render_template(task.bash_command, {"ds": ds}))


def test_the_dag_runs_hourly_one_run_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(monkeypatch)
    options = getattr(dag, "options", None) or {
        "schedule": dag.schedule_interval if hasattr(dag, "schedule_interval") else dag.schedule,
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
    }
    assert options["schedule"] == timedelta(hours=1)
    assert options["max_active_runs"] == 1 and options["catchup"] is False
    assert dag.dag_id == "lookalike_incremental_index"


def test_the_task_runs_an_incremental_ray_index_the_cli_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dag = load_dag(
        monkeypatch,
        LOOKALIKE_DAG_MANIFEST="/exports/shop catalog-{{ ds }}.jsonl",
        LOOKALIKE_RAY_ADDRESS="ray://head:10001",
        LOOKALIKE_CATALOG_URL="postgresql://lookalike@db/catalog",
    )
    command = rendered_command(dag, "2026-11-30")
    assert command == [
        "lookalike",
        "index",
        "/exports/shop catalog-2026-11-30.jsonl",
        "--engine",
        "ray",
        "--quiet",
    ]
    # The real command line parses it (options and argument), without running it.
    group = typer.main.get_command(app)
    parent = group.make_context("lookalike", command[1:])
    index = group.get_command(parent, command[1])
    context = index.make_context(command[1], command[2:], parent=parent)
    assert context.params["engine_name"] == "ray" and context.params["quiet"] is True
    assert context.params["source"] == "/exports/shop catalog-2026-11-30.jsonl"
    # The task's environment: what the worker should use, unset values left out.
    env = dag.get_task("index").env
    assert env["LOOKALIKE_RAY_ADDRESS"] == "ray://head:10001"
    assert env["LOOKALIKE_CATALOG_URL"] == "postgresql://lookalike@db/catalog"
    assert "LOOKALIKE_INDEX_URL" not in env


def test_the_dag_is_not_part_of_the_package() -> None:
    import lookalike

    package = Path(lookalike.__file__).parent
    assert not any("airflow" in path.read_text() for path in package.rglob("*.py"))
