"""Task templates: ready prompts for the jobs small language models are asked to do (question
answering over passages, sentiment, translation, coreference, parsing into JSON fields,
summarisation), each in zero-shot, few-shot and chain-of-thought modes, with a small evaluation set
and a scoring rule of its own. Nothing here loads a model: a Generator is passed in."""

from .errors import TaskError, TaskInputError, TaskNotFound
from .library import TEMPLATES, get_template
from .runner import TaskRun, TaskScore, evaluate, evaluate_probe, run_task, train_template_probe
from .templates import MODES, Shot, TaskTemplate

__all__ = ["MODES", "TEMPLATES", "Shot", "TaskError", "TaskInputError", "TaskNotFound", "TaskRun",
           "TaskScore", "TaskTemplate", "evaluate", "evaluate_probe", "get_template", "run_task",
           "train_template_probe"]
