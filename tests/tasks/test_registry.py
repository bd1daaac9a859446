"""The task registry: strict names, the protocol, and which task each registered model fits."""
from __future__ import annotations

import pytest

from cnnlstm import create_model, list_models
from cnnlstm.tasks import Task, get_task, list_tasks, register_task, task_of_model


def test_the_four_tasks_are_registered_and_implement_the_protocol():
    assert list_tasks() == ["classify", "segment", "caption", "multilabel"]
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
def test_every_model_fits_the_tasks_of_exactly_one_output(name):
    """Tasks that read the same output (clip logits: classify, multilabel) share their models;
    task_of_model names the first, and every other task refuses the model."""
    model = create_model(name, num_classes=8, backbone="test_tiny")
    fitting = [t for t in list_tasks() if get_task(t).fits(model)]
    assert fitting and fitting[0] == task_of_model(model).name, (name, fitting)
    assert len({get_task(t).output_kind for t in fitting}) == 1, (name, fitting)
    for task in fitting:
        get_task(task).check_model(model)
    for other in set(list_tasks()) - set(fitting):
        with pytest.raises(ValueError):
            get_task(other).check_model(model)


def test_clip_classifiers_serve_both_clip_tasks_and_per_frame_models_neither():
    clip = create_model("cnn_lstm", num_classes=4, backbone="test_tiny")
    assert [t for t in list_tasks() if get_task(t).fits(clip)] == ["classify", "multilabel"]
    per_frame = create_model("seq2seq_cnn_lstm", num_classes=4, backbone="test_tiny")
    with pytest.raises(ValueError, match="labels every frame.*--model cnn_lstm"):
        get_task("multilabel").check_model(per_frame)


def test_each_task_reaches_for_a_model_that_fits_it():
    for name in list_tasks():
        model = create_model(get_task(name).default_model, num_classes=8, backbone="test_tiny")
        assert get_task(name).fits(model)
        assert task_of_model(model).output_kind == get_task(name).output_kind
