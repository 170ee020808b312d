"""A minimal stand-in for the part of Apache Airflow's import surface the example DAG uses
(`DAG` as a context manager, `BashOperator`), for the test that loads the DAG file.

Why not Airflow itself: Airflow 3.3 pins FastAPI below 0.137, and installing it would
downgrade the FastAPI Lookalike's API runs on in the shared environment. The stand-in
records what the DAG declares and renders templates with Jinja, as Airflow does; the
example was also loaded once with real Airflow in a throwaway environment (see
docs/scaling-batch.md). When `airflow` is importable, the test uses it instead.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jinja2


class DAG:
    current: DAG | None = None

    def __init__(self, dag_id: str, **options: Any) -> None:
        self.dag_id = dag_id
        self.options = options
        self.task_dict: dict[str, BashOperator] = {}

    def __enter__(self) -> DAG:
        DAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        DAG.current = None

    def get_task(self, task_id: str) -> BashOperator:
        return self.task_dict[task_id]


class BashOperator:
    template_fields = ("bash_command", "env")

    def __init__(self, task_id: str, bash_command: str, **options: Any) -> None:
        if DAG.current is None:
            raise RuntimeError("an operator outside a DAG")
        self.task_id = task_id
        self.bash_command = bash_command
        self.env = options.pop("env", None)
        self.options = options
        DAG.current.task_dict[task_id] = self

    def render_template(self, content: str, context: dict[str, Any]) -> str:
        return (
            jinja2.Environment(undefined=jinja2.StrictUndefined)
            .from_string(content)
            .render(**context)
        )


@contextmanager
def airflow_standin() -> Iterator[None]:
    """`airflow`, `airflow.sdk` and the operator modules, for the duration of a load."""
    names = (
        "airflow",
        "airflow.sdk",
        "airflow.operators",
        "airflow.operators.bash",
        "airflow.providers",
        "airflow.providers.standard",
        "airflow.providers.standard.operators",
        "airflow.providers.standard.operators.bash",
    )
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}
    modules["airflow"].DAG = DAG
    modules["airflow.sdk"].DAG = DAG
    modules["airflow.operators.bash"].BashOperator = BashOperator
    modules["airflow.providers.standard.operators.bash"].BashOperator = BashOperator
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
