"""Tasks: what a run learns, and everything that differs with it.

- ``classify``: one label per clip (action recognition).
- ``segment``: one label per sampled frame (temporal action segmentation), from a segments file.
- ``caption``: a sentence per clip (encoder-decoder with attention over the frames).
- ``multilabel``: every action a clip shows (a sigmoid per class), from a ``path,labels`` file.

Each task is a unit (a folder with its task, metrics, plots and synthetic data) implementing the
:class:`~cnnlstm.tasks.base.Task` protocol. This module is the registry: a dict plus
:func:`register_task`, which refuses a second task of the same name. Code outside ``tasks/`` asks
the run's task (``get_task(cfg.task)``) or the task a model fits (:func:`task_of_model`) and never
compares task names.
"""
from __future__ import annotations

import difflib

from .base import Task, TaskData, teacher_forcing_ratio
from .caption.task import CaptionTask
from .classify.task import ClassifyTask
from .multilabel.task import MultiLabelTask
from .segment.task import SegmentTask

_TASKS: dict[str, Task] = {}


def register_task(task_cls: type) -> type:
    """Register an instance of ``task_cls`` under its ``name``; usable as a class decorator. A name
    that is already registered raises ValueError."""
    task = task_cls()
    if not isinstance(task, Task):
        raise TypeError(f"{task_cls.__name__} does not implement the Task protocol (cnnlstm.tasks.base.Task)")
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered ({type(_TASKS[task.name]).__name__}); "
                         "pick another name")
    _TASKS[task.name] = task
    return task_cls


def list_tasks() -> list[str]:
    """Registered task names, in registration order."""
    return list(_TASKS)


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name lists the closest and the valid ones."""
    if name not in _TASKS:
        close = difflib.get_close_matches(name, _TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; expected one of {list_tasks()}")
    return _TASKS[name]


def task_of_model(model) -> Task:
    """The first registered task whose output ``model`` produces (tasks that read the same output,
    such as ``classify`` and ``multilabel`` for clip logits, share their models: the first is the
    one that names the output)."""
    for task in _TASKS.values():
        if task.fits(model):
            return task
    raise ValueError(f"no registered task fits {type(model).__name__}; tasks: {list_tasks()}")


for _task in (ClassifyTask, SegmentTask, CaptionTask, MultiLabelTask):
    register_task(_task)

__all__ = ["Task", "TaskData", "register_task", "get_task", "list_tasks", "task_of_model", "teacher_forcing_ratio"]
