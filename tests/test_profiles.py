"""invrob.profiles (a facade over invrob.studies) and the study grids; the runbook's timing table."""
from __future__ import annotations

import pandas as pd
import pytest

from invrob import profiles, studies
from invrob.tooling import runbook
from invrob.errors import InvrobError


def test_overrides_win_and_none_keeps_the_profile():
    base = profiles.settings("invariance", "cpu")
    custom = profiles.settings("invariance", "cpu", seeds=[3], thetas=[0, 45], models=None)
    assert custom.seeds == [3] and custom.thetas == [0, 45] and custom.models == base.models
    assert custom.study == "invariance" and custom.profile == "cpu"


@pytest.mark.parametrize("args, kwargs, message", [
    (("invariance", "huge"), {}, "unknown profile 'huge'"),
    (("rotation", "cpu"), {}, "unknown study 'rotation'"),
    (("invariance", "cpu"), {"sead": [0]}, "unknown setting 'sead'"),
    (("invariance", "cpu"), {"thetas": [0, 200]}, "200"),
    (("adversarial", "smoke"), {"eps_train": [0.0, -0.1]}, "-0.1"),
])
def test_bad_settings_are_one_line_errors(args, kwargs, message):
    with pytest.raises(InvrobError, match=message) as error:
        profiles.settings(*args, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("study", sorted(profiles.STUDIES))
def test_every_profile_defines_the_same_core_settings(study):
    core = set(profiles.STUDIES[study]["smoke"])
    for profile in profiles.PROFILES:
        assert core <= set(profiles.STUDIES[study][profile]), profile
    table = profiles.table(study)
    assert list(table.columns) == list(profiles.PROFILES) and set(core) <= set(table.index)


def test_table_shows_cifar_budgets_in_255ths():
    assert profiles.table("adversarial").loc["cifar_eps_train", "paper"] == "[0, 2/255, 4/255, 8/255]"
    assert profiles.table("invariance").loc["train_size", "paper"] == "all"


def test_profiles_read_the_settings_each_study_owns():
    assert list(profiles.STUDIES) == list(studies.STUDIES)
    for name, study in studies.STUDIES.items():
        assert profiles.STUDIES[name] is study.profile_settings
        assert vars(profiles.settings(name, "cpu")) == vars(study.settings("cpu"))
        assert profiles.table(name).equals(study.settings_table())


def test_study_configs_cross_the_grid():
    inv = profiles.settings("invariance", "smoke", thetas=[0, 90, 180], seeds=[0, 1])
    configs = studies.get("invariance").configs(inv)
    assert len(configs) == len(inv.models) * 3 * 2
    assert {(c.model, c.theta, c.seed) for c in configs} == {
        (m, t, s) for m in inv.models for t in (0, 90, 180) for s in (0, 1)}
    per_model = studies.get("invariance").per_model
    assert all(c.eps == 0 and c.optimizer == inv.optimizer and c.epochs == per_model(inv.epochs, c.model)
               for c in configs)

    adv = profiles.settings("adversarial", "cpu")
    configs = studies.get("adversarial").configs(adv)
    assert sorted({c.eps for c in configs}) == sorted(adv.eps_train) and all(c.theta == 0 for c in configs)
    assert all(c.attack_steps == adv.attack_steps and c.weight_decay == adv.weight_decay for c in configs)


def test_cifar_grids_use_the_cifar_settings():
    adv = profiles.settings("adversarial", "paper")
    resnets = studies.get("adversarial").configs(adv, "cifar10")
    assert {c.model for c in resnets} == {"resnet18"} and {c.dataset for c in resnets} == {"cifar10"}
    assert sorted({c.eps for c in resnets}) == sorted(adv.cifar_eps_train)
    assert all(c.epochs == adv.cifar_epochs for c in resnets)
    inv = profiles.settings("invariance", "paper")
    study = studies.get("invariance")
    assert len(study.configs(inv, "cifar10")) == \
        sum(len(study.per_model(inv.thetas, m)) for m in inv.models) * len(inv.seeds)


def test_settings_may_differ_per_model():
    """thetas, epochs and widths may be {model: value} maps: the p4 GCNN gets a dense θ grid inside
    [0, 45] (it is invariant to 90° turns), the StdCNN its width and epochs; a plain list applies to all."""
    study = studies.get("invariance")
    cpu = profiles.settings("invariance", "cpu", models=["stdcnn", "gcnn_p4"])  # cpu's default is StdCNN only
    grid = study.configs(cpu)
    p4 = [c for c in grid if c.model == "gcnn_p4"]
    std = [c for c in grid if c.model == "stdcnn"]
    assert sorted({c.theta for c in p4}) == sorted(cpu.thetas["gcnn_p4"]) and max(c.theta for c in p4) <= 45
    assert {c.epochs for c in std} == {cpu.epochs["stdcnn"]} and {c.epochs for c in p4} == {cpu.epochs["gcnn_p4"]}
    assert {c.model_kwargs.get("width") for c in std} == {cpu.widths["stdcnn"]}
    assert all("width" not in c.model_kwargs for c in p4)
    assert len(cpu.seeds) >= 5
    same = study.configs(profiles.settings("invariance", "cpu", thetas=[0, 90]))
    assert {c.theta for c in same} == {0, 90}
    with pytest.raises(InvrobError, match="theta"):
        profiles.settings("invariance", "cpu", thetas={"stdcnn": [0, 200]})


def test_record_time_upserts_one_row_per_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(runbook, "REPO", tmp_path)
    runbook.record_time("smoke", "01_a", 3.0)
    runbook.record_time("smoke", "00_b", 1.0)
    path = runbook.record_time("smoke", "01_a", 5.0)
    table = pd.read_csv(path)
    assert list(table["notebook"]) == ["00_b", "01_a"] and list(table["seconds"]) == [1.0, 5.0]
    assert table["cpus"].dtype.kind == "i"


def test_tidy_streams_keeps_the_final_state_of_each_bar(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    cell = new_code_cell("train()")
    cell.outputs = [new_output("stream", name="stderr", text="\rbar:   0%| 0/9"),
                    new_output("stream", name="stderr", text="\rbar:  50%| 4/9"),
                    new_output("stream", name="stderr", text="\rbar: 100%| 9/9\n"),
                    new_output("stream", name="stdout", text="done\n"),
                    new_output("stream", name="stdout", text="next\n"),
                    new_output("display_data", data={"text/plain": "x"})]
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[cell]), path)
    runbook.tidy_streams(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "stream", "display_data"]
    assert outputs[0].text == "bar: 100%| 9/9\n" and outputs[1].text == "done\nnext\n"
