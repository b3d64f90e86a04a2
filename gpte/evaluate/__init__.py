"""MTEB-compatible evaluation: the eight task types with mteb's metrics and protocols, on local folders.

    from gpte import Embedder
    from gpte.evaluate import discover_tasks, evaluate
    run = evaluate(Embedder.load(), discover_tasks("../shared/data"), output="results")
"""

from gpte.evaluate.encoder import EncoderProtocol, TaskEncoder
from gpte.evaluate.runner import EvaluationRun, evaluate
from gpte.evaluate.tasks import TASK_TYPES, Task, discover_tasks, load_task, select_tasks

__all__ = ["EncoderProtocol", "EvaluationRun", "TASK_TYPES", "Task", "TaskEncoder", "discover_tasks", "evaluate", "load_task", "select_tasks"]
