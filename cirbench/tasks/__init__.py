"""Tasks; importing this package registers every task name in :data:`TASKS`."""

from cirbench.tasks import (  # noqa: F401  (registration side effects)
    cifar,
    cuhk_sysu,
    digits,
    fashion_mnist,
    fewshot,
    market,
)
from cirbench.tasks.base import (
    TASKS,
    AnyTask,
    EvalContext,
    MetricInfo,
    Task,
    TaskData,
    default_methods,
    metric_info,
    reference_profile,
    reference_weights,
    task_metrics,
)

__all__ = [
    "TASKS",
    "AnyTask",
    "EvalContext",
    "MetricInfo",
    "Task",
    "TaskData",
    "default_methods",
    "metric_info",
    "reference_profile",
    "reference_weights",
    "task_metrics",
]
