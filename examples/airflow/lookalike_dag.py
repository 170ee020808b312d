"""Batch indexing on a schedule: an Apache Airflow DAG that runs an incremental
`lookalike index --engine ray` over the catalog export, every hour.

An example for your Airflow deployment, never a dependency of Lookalike: copy this file
into the DAGs folder of an Airflow 2.4+ or 3.x installation whose workers have Lookalike
(`pip install "lookalike[ray]"`) and can reach the Ray cluster and the catalog database.

Incremental: each run reads the whole export, and `lookalike index` skips every item whose
image (content hash) and metadata are unchanged, so only new and changed products are
encoded. A run that stops (a worker lost, a timeout) leaves its finished shards in the
catalog; the retry resumes from them. Runs never overlap (`max_active_runs=1`).

Settings come from the environment the worker gives the task, as for any Lookalike
command (`env` below: the catalog, model and Ray cluster); put secrets in Airflow
connections or a secrets backend, not in this file.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

try:  # Airflow 3: the task SDK and the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.4+
    from airflow import DAG
    from airflow.operators.bash import BashOperator

# Where the shop's catalog export lands (CSV or JSONL manifest; `{{ ds }}` is the run's date).
MANIFEST = os.environ.get("LOOKALIKE_DAG_MANIFEST", "/data/exports/catalog-{{ ds }}.jsonl")
# The Lookalike settings of the indexing task (LOOKALIKE_* variables; see Configuration).
TASK_ENV = {
    "LOOKALIKE_DATA_DIR": os.environ.get("LOOKALIKE_DATA_DIR", "/data/lookalike"),
    "LOOKALIKE_CATALOG_URL": os.environ.get("LOOKALIKE_CATALOG_URL", ""),
    "LOOKALIKE_INDEX_URL": os.environ.get("LOOKALIKE_INDEX_URL", ""),
    "LOOKALIKE_MODEL_CHECKPOINT": os.environ.get("LOOKALIKE_MODEL_CHECKPOINT", ""),
    "LOOKALIKE_RAY_ADDRESS": os.environ.get("LOOKALIKE_RAY_ADDRESS", "auto"),
}

with DAG(
    dag_id="lookalike_incremental_index",
    description="Index new and changed products of the catalog export on Ray",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,  # the export holds the whole catalog: only the latest run matters
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=6),
    },
    tags=["lookalike"],
) as dag:
    index = BashOperator(
        task_id="index",
        # Airflow renders the manifest's template ({{ ds }}); the Ray cluster comes from
        # LOOKALIKE_RAY_ADDRESS; --quiet: a task log is no terminal for a progress bar.
        bash_command=f'lookalike index "{MANIFEST}" --engine ray --quiet',
        # Unset values are dropped: an empty LOOKALIKE_CATALOG_URL would not mean "default".
        env={name: value for name, value in TASK_ENV.items() if value},
        append_env=True,  # keep PATH and the worker's own environment
    )
