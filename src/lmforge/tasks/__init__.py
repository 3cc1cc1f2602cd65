"""Tasks: each file implements the `Task` protocol; `TASKS` is the one list of task names."""

from lmforge.tasks.base import Task
from lmforge.tasks.classification import TextClassification, TextClassificationParams

TASKS: dict[str, type[Task]] = {
    "text-classification": TextClassification,
}
TASK_PARAMS = {
    "text-classification": TextClassificationParams,
}

__all__ = ["TASKS", "TASK_PARAMS", "Task"]
