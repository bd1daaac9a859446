"""The task registry: strict names, the protocol, and which task each registered model fits."""
from __future__ import annotations

import pytest

from cnnlstm import create_model, list_models
from cnnlstm.tasks import Task, get_task, list_tasks, register_task, task_of_model


def test_the_three_tasks_are_registered_and_implement_the_protocol():
    assert list_tasks() == ["classify", "segment", "caption"]
    for name in list_tasks():
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task.default_model in list_models(), task.default_model


def test_unknown_names_list_the_closest_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown task 'segmnet' \(did you mean 'segment'\?\).*'caption'"):
        get_task("segmnet")


def test_a_second_task_of_the_same_name_is_refused():
    class Another:
        name = "classify"

    with pytest.raises((ValueError, TypeError)):
        register_task(Another)
    with pytest.raises(ValueError, match="already registered"):
        register_task(type(get_task("segment")))


@pytest.mark.parametrize("name", list_models())
def test_every_model_fits_exactly_one_task(name):
    model = create_model(name, num_classes=8, backbone="test_tiny")
    fitting = [t for t in list_tasks() if get_task(t).fits(model)]
    assert fitting == [task_of_model(model).name], (name, fitting)
    get_task(fitting[0]).check_model(model)
    for other in set(list_tasks()) - set(fitting):
        with pytest.raises(ValueError):
            get_task(other).check_model(model)


def test_each_task_reaches_for_a_model_that_fits_it():
    for name in list_tasks():
        model = create_model(get_task(name).default_model, num_classes=8, backbone="test_tiny")
        assert task_of_model(model).name == name
