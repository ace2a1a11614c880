"""Tasks; importing this package registers every task name in :data:`TASKS`."""

from cirbench.tasks import (  # noqa: F401  (registration side effects)
    cifar,
    cuhk_sysu,
    digits,
    fashion_mnist,
    fewshot,
    market,
)
from cirbench.tasks.base import TASKS, EvalContext, Task, TaskData

__all__ = ["TASKS", "EvalContext", "Task", "TaskData"]
