"""tools/train_default_model.py: a tiny run end to end, and its install rule (evaluation faked).

The real evaluation (held-out phantoms, real structures, the held-out suite's +5-click protocol) is
covered by tests/test_train.py and tests/test_evaluate.py; here it is replaced by fixed scores so
that the rule's every branch is exercised in seconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from nni_widget.model import load_model_folder

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "features=[4, 8]", "--set", "blocks=[1, 1]", "--set", "patch_size=[16, 16, 16]",
    "--set", "train_patch_size=[16, 16, 16]", "--set", "n_phantoms=2", "--set", "phantom_shapes=[[32, 48, 48]]",
    "--set", "n_real=0", "--set", "real_sources=[]", "--set", "warmup_steps=1", "--set", "log_every=1",
    "--time-limit", "0",
]  # fmt: skip


@pytest.fixture
def tool(monkeypatch):
    spec = importlib.util.spec_from_file_location("train_default_model", REPO / "tools" / "train_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scores = {"model": (0.5, 0.5), "init_model": (0.5, 0.5)}  # folder name -> (phantom mean, real score)

    def fake_evaluate(folder):
        load_model_folder(folder, device="cpu")  # what is evaluated must load
        phantom, real = scores[Path(folder).name]
        return {"phantom_mean": phantom, "real_mean": real, "real_plus5_mean": real, "real_score": real}

    monkeypatch.setattr(module, "evaluate", fake_evaluate)
    monkeypatch.setenv("NNI_WIDGET_EVAL_CACHE", "")  # the scores change between calls; the cache has its own test
    module.scores = scores
    return module


def _weight_dtypes(folder: Path) -> set:
    state = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    return {v.dtype for v in state.values()}


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_tool_trains_installs_and_keeps_a_better_model(tmp_path, tool):
    dest = tmp_path / "dest"
    # a first model from scratch: nothing to compare with, so it is installed with its records
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0
    assert (dest / "LICENSE").read_text().splitlines()[0] == "Apache-2.0"
    for name in ("config.json", "train_log.csv", "provenance.json", "held_out_eval.json"):
        assert (dest / name).is_file(), name
    prov = _json(dest / "provenance.json")
    assert (prov["previous_steps"], prov["steps"], prov["cumulative_steps"]) == (0, 2, 2)
    assert _json(dest / "held_out_eval.json")["installed"] is True
    assert load_model_folder(dest, device="cpu").extra["steps"] == 2

    # a continuation that scores lower stays in its run directory
    run2 = tmp_path / "run2"
    tool.scores.update(model=(0.5, 0.4), init_model=(0.5, 0.45))
    assert tool.main(["--run", str(run2), "--init-from", str(dest), "--dest", str(dest), "--steps", "3", *TINY]) == 0
    report = _json(run2 / "held_out_eval.json")
    assert report["installed"] is False and report["new"]["real_score"] == 0.4
    assert _json(dest / "provenance.json")["cumulative_steps"] == 2  # the installed model is untouched
    assert (run2 / "init_model").is_dir()  # the comparison was with a copy of the starting model

    # a better real score with a phantom drop beyond the tolerance is still refused ...
    tool.scores.update(model=(0.40, 0.6), init_model=(0.5, 0.45))
    assert tool.main(["--run", str(run2), "--init-from", str(dest), "--dest", str(dest), "--skip-training",
                      "--tolerance", "0.05", *TINY]) == 0  # fmt: skip
    assert _json(run2 / "held_out_eval.json")["installed"] is False
    assert _json(dest / "provenance.json")["cumulative_steps"] == 2
    # ... and within it, the re-evaluated run is installed, with the record of its training command
    tool.scores.update(model=(0.47, 0.6))
    assert tool.main(["--run", str(run2), "--init-from", str(dest), "--dest", str(dest), "--skip-training",
                      "--tolerance", "0.05", *TINY]) == 0  # fmt: skip
    prov = _json(dest / "provenance.json")
    assert (prov["previous_steps"], prov["steps"], prov["cumulative_steps"]) == (2, 3, 5)
    assert "--steps 3" in prov["command"] and "--skip-training" not in prov["command"]
    assert _json(dest / "held_out_eval.json")["installed"] is True
    assert load_model_folder(dest, device="cpu").extra["steps"] == 3


def test_an_evaluation_is_reused_only_for_the_same_weights_and_code(tmp_path, tool, monkeypatch):
    cache = tmp_path / "evaluations"
    monkeypatch.setenv("NNI_WIDGET_EVAL_CACHE", str(cache))
    evaluated = []
    fake = tool.evaluate

    def counting(folder):
        evaluated.append(Path(folder).name)
        return fake(folder)

    monkeypatch.setattr(tool, "evaluate", counting)
    dest, run = tmp_path / "dest", tmp_path / "run"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0
    assert evaluated == ["model"] and len(list(cache.glob("*.json"))) == 1
    tool.scores.update(model=(0.5, 0.4), init_model=(0.5, 0.45))
    assert tool.main(["--run", str(run), "--init-from", str(dest), "--dest", str(dest), "--steps", "3", *TINY]) == 0
    # the starting weights are run1's model, evaluated above: only the new weights are evaluated
    assert evaluated == ["model", "model"]
    assert _json(run / "held_out_eval.json")["previous"]["real_score"] == 0.5  # run1's stored figure, not 0.45

    evaluated.clear()
    assert tool.main(["--run", str(run), "--dest", str(dest), "--skip-training", *TINY]) == 0
    assert evaluated == []  # both stored
    assert tool.main(["--run", str(run), "--dest", str(dest), "--skip-training", "--no-eval-cache", *TINY]) == 0
    assert evaluated == ["model", "init_model"]
    assert _json(run / "held_out_eval.json")["previous"]["real_score"] == 0.45

    # other weights in the same folder, or other code, give another key
    key = tool.evaluation_key(run / "model")
    assert tool.evaluation_key(run / "init_model") != key
    package_file = tmp_path / "pkg" / "nni_widget" / "__init__.py"
    package_file.parent.mkdir(parents=True)
    package_file.write_text("# another version of the code\n")
    monkeypatch.setattr("nni_widget.__file__", str(package_file))
    other = tool.evaluation_key(run / "model")
    assert other.split("-")[0] == key.split("-")[0] and other != key


def test_an_incomplete_evaluation_is_not_stored(tmp_path, tool, monkeypatch):
    """Offline (no real volumes) or with a real source skipped, the figures are not the protocol's:
    the next call evaluates again instead of reusing them once the data is there."""
    cache = tmp_path / "evaluations"
    log = tool.logging.getLogger("test")
    dest = tmp_path / "dest"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "1", *TINY]) == 0
    results = iter([
        {"real_plus5_mean": None, "real": {"skipped": []}},  # offline: no +5 suite
        {"real_plus5_mean": 0.5, "real": {"skipped": ["lung2_ct"]}},  # one source missing
        {"real_plus5_mean": 0.5, "real": {"skipped": []}},  # complete: stored
    ])  # fmt: skip
    calls = []
    monkeypatch.setattr(tool, "evaluate", lambda folder: calls.append(folder) or next(results))
    for expected_calls in (1, 2, 3, 3):
        tool.evaluate_cached(dest, cache, log)
        assert len(calls) == expected_calls
    assert len(list(cache.glob("*.json"))) == 1


def test_paired_differences_give_the_margin_and_its_noise(tool):
    import statistics

    first_old = {"a": {"box": 0.5, "lasso": 0.6}, "b": {"box": 0.4, "lasso": 0.7}}
    first_new = {"a": {"box": 0.52, "lasso": 0.61}, "b": {"box": 0.41, "lasso": 0.72}}
    plus_old = {"a box": 0.7, "a lasso": 0.8, "b box": 0.6, "b lasso": 0.9}
    plus_new = {"a box": 0.75, "a lasso": 0.7, "b box": 0.65, "b lasso": 0.85}
    new = {"real": {"dice_by_structure": first_new}, "real_interactive": {"dice_plus5": plus_new}}
    old = {"real": {"dice_by_structure": first_old}, "real_interactive": {"dice_plus5": plus_old}}
    d = tool.paired_differences(new, old)
    first_diffs, plus_diffs = [0.02, 0.01, 0.01, 0.02], [0.05, -0.1, 0.05, -0.05]
    assert d["real_first_prompt"]["n"] == 4 and d["real_plus5"]["n"] == 4
    assert d["real_first_prompt"]["mean"] == pytest.approx(0.015)
    assert d["real_plus5"]["mean"] == pytest.approx(-0.0125)
    se_first = statistics.stdev(first_diffs) / 2
    se_plus = statistics.stdev(plus_diffs) / 2
    assert d["real_plus5"]["standard_error"] == pytest.approx(se_plus, abs=1e-4)
    assert d["real_score"]["mean"] == pytest.approx((0.015 - 0.0125) / 2, abs=1e-4)
    assert d["real_score"]["standard_error"] == pytest.approx(0.5 * (se_first**2 + se_plus**2) ** 0.5, abs=1e-4)
    # evaluations without per-case figures (offline, or faked) give none
    assert tool.paired_differences({"real_score": 0.5}, {"real_score": 0.4}) is None
    empty = {"real": {"dice_by_structure": {}}, "real_interactive": {"dice_plus5": {}}}
    assert tool.paired_differences(empty, empty) is None


def test_the_rule_compares_networks_without_mirroring(tool, monkeypatch):
    """The +5-click figures run the engine unmirrored even for a folder that asks for mirroring
    (session 27's folders do): every figure of the rule measures the network alone."""
    import nni_widget.evaluate as ev

    made = []

    class Spy:
        def __init__(self, model, **kw):
            made.append((model, kw))

    monkeypatch.setattr(ev, "EngineMethod", Spy)
    monkeypatch.setattr(ev, "load_suite", lambda name: [])
    monkeypatch.setattr(ev, "run_suite", lambda cases, methods, kinds, progress: [])
    assert tool.evaluate_interactive(Path("some/model"))["n_runs"] == 0
    assert made == [("some/model", {"mirroring": False})]


def test_tool_rejects_an_unknown_setting(tmp_path, tool):
    with pytest.raises(SystemExit, match="not_a_field"):
        tool.main(["--run", str(tmp_path / "run"), "--dest", str(tmp_path / "d"), "--set", "not_a_field=1"])


def test_pseudo_only_sources_follow_an_overridden_source_list(tool):
    """The default recipe trains on itk_t1_tissue's pseudo-labels only; naming other sources keeps
    that rule for those that remain, and an explicit setting wins."""
    assert tool.DEFAULT_CONFIG.pseudo_only_sources == ("itk_t1_tissue",)
    assert tool._overrides(['real_sources=["brain1_mr"]'])["pseudo_only_sources"] == []
    both = tool._overrides(['real_sources=["brain1_mr","itk_t1_tissue"]'])
    assert both["pseudo_only_sources"] == ["itk_t1_tissue"]
    mine = tool._overrides(['real_sources=["itk_t1_tissue"]', "pseudo_only_sources=[]"])
    assert mine["pseudo_only_sources"] == []
    assert "pseudo_only_sources" not in tool._overrides(["seed=3"])


def test_native_grids_alone_switch_off_the_grid_mix(tool):
    """The default recipe resamples the real heads to 1 mm and keeps a share of native-grid crops;
    asking for the native grids alone (real_spacing null) turns the mix off instead of failing."""
    from nni_widget.train import TrainConfig

    assert tool.DEFAULT_CONFIG.real_spacing == (1.0, 1.0, 1.0) and 0 < tool.DEFAULT_CONFIG.real_native_p < 1
    native = tool._overrides(["real_spacing=null"])
    assert native == {"real_spacing": None, "real_native_p": 0.0}
    cfg = TrainConfig.from_dict({**tool.DEFAULT_CONFIG.to_dict(), **native})
    assert cfg.real_spacing is None and cfg.real_native_p == 0
    with pytest.raises(ValueError, match="real_native_p"):  # an explicit share still needs a grid
        TrainConfig.from_dict({**tool.DEFAULT_CONFIG.to_dict(), **tool._overrides(["real_spacing=null",
                                                                                     "real_native_p=0.5"])})


def test_train_here_evaluate_elsewhere(tmp_path, tool, monkeypatch):
    """--no-eval trains and records (as on the GPU machine); --skip-training later evaluates and installs."""
    dest, run = tmp_path / "dest", tmp_path / "gpu_run"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0

    def no_evaluation(folder):
        raise AssertionError("--no-eval must not evaluate")

    with monkeypatch.context() as m:
        m.setattr(tool, "evaluate", no_evaluation)
        assert tool.main(["--run-dir", str(run), "--init-from", str(dest), "--dest", str(dest), "--no-eval",
                          "--steps", "3", *TINY, "--set", "weights_dtype=float32"]) == 0  # fmt: skip
    assert _weight_dtypes(run / "model") == {torch.float32}
    assert not (run / "held_out_eval.json").exists()
    assert _json(dest / "provenance.json")["cumulative_steps"] == 2  # nothing installed yet
    prov = _json(run / "provenance.json")
    assert (prov["previous_steps"], prov["steps"], prov["cumulative_steps"], prov["world_size"]) == (2, 3, 5, 1)

    tool.scores.update(model=(0.5, 0.6), init_model=(0.5, 0.45))
    # a run without its training record is refused before --dest is touched
    (run / "provenance.json").rename(run / "provenance.bak")
    with pytest.raises(SystemExit, match="lacks provenance.json"):
        tool.main(["--run", str(run), "--dest", str(dest), "--skip-training", "--force", *TINY])
    assert _json(dest / "provenance.json")["cumulative_steps"] == 2
    (run / "provenance.bak").rename(run / "provenance.json")
    # evaluated and installed as the package ships it: in float16 (how the export is stored may change)
    assert tool.main(["--run", str(run), "--dest", str(dest), "--skip-training", *TINY,
                      "--set", "weights_dtype=float16"]) == 0  # fmt: skip
    assert _weight_dtypes(run / "model") == _weight_dtypes(dest) == {torch.float16}
    assert _json(run / "config.json")["weights_dtype"] == "float16"
    assert _json(run / "held_out_eval.json")["installed"] is True
    assert _json(dest / "provenance.json")["cumulative_steps"] == 5
    assert "--no-eval" in _json(dest / "provenance.json")["command"]  # the training command is kept


def test_average_of_two_runs_is_evaluated_and_installed_with_both_records(tmp_path, tool):
    """average_models.py --run-dir turns two runs into one run directory that this tool evaluates
    against --baseline and installs with both runs' configs and logs."""
    spec = importlib.util.spec_from_file_location("average_models", REPO / "tools" / "average_models.py")
    avg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(avg)
    dest = tmp_path / "dest"
    assert tool.main(["--run", str(tmp_path / "base"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0
    for name, seed in (("run_a", 1), ("run_b", 2)):
        assert tool.main(["--run", str(tmp_path / name), "--init-from", str(dest), "--no-eval", "--steps", "3",
                          "--set", f"seed={seed}", *TINY]) == 0  # fmt: skip
    # a lasting mark in each run's manifest, so the merged one can be checked
    for name in ("run_a", "run_b"):
        (tmp_path / name / "data_manifest.json").write_text(json.dumps({"volumes": [{"source": name}, {"source": "x"}]}))
    run = tmp_path / "run_ab"
    args = [str(tmp_path / "run_a"), str(tmp_path / "run_b"), str(tmp_path / "soup"), "--run-dir", str(run)]
    with pytest.raises(SystemExit):  # a run directory needs the model to beat
        avg.main(args)
    assert avg.main([*args, "--baseline", str(dest)]) == 0
    assert {"model", "init_model", "config.json", "config_run_b.json", "train_log.csv", "train_log_run_b.csv",
            "provenance.json", "data_manifest.json"} <= {p.name for p in run.iterdir()}  # fmt: skip
    assert [v["source"] for v in _json(run / "data_manifest.json")["volumes"]] == ["run_a", "x", "run_b"]
    prov = _json(run / "provenance.json")
    assert set(prov["weight_average"]) >= {"run_a", "run_b"} and prov["cumulative_steps"] == 5
    assert "--run-dir" in prov["command"]
    tool.scores.update(model=(0.5, 0.6), init_model=(0.5, 0.45))
    assert tool.main(["--run", str(run), "--dest", str(dest), "--skip-training", *TINY]) == 0
    assert _json(run / "held_out_eval.json")["installed"] is True
    for name in ("config_run_b.json", "train_log_run_b.csv", "config.json", "train_log.csv"):
        assert (dest / name).is_file(), name
    assert "weight_average" in _json(dest / "provenance.json")
    assert load_model_folder(dest, device="cpu").extra["weight_average"]["weight_a"] == 0.5
    with pytest.raises(ValueError, match="lacks model/plans.json"):  # a model folder is no finished run
        avg.check_run_dirs(tmp_path / "run_a", dest, dest)
    with pytest.raises(SystemExit):  # the command line says so before writing anything
        avg.main([str(tmp_path / "run_a"), str(dest), str(tmp_path / "soup2"), "--run-dir", str(tmp_path / "r2"),
                  "--baseline", str(dest)])  # fmt: skip
    assert not (tmp_path / "soup2").exists() and not (tmp_path / "r2").exists()


def test_only_rank_zero_evaluates_and_installs(tmp_path, tool, monkeypatch):
    """Under torchrun every rank runs the tool; the others return after training, touching nothing."""
    dest = tmp_path / "dest"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0
    monkeypatch.setattr(tool, "train", lambda cfg, out, **kw: out)  # a non-zero rank's train() returns the run dir
    monkeypatch.setenv("RANK", "1")
    run = tmp_path / "run2"
    assert tool.main(["--run", str(run), "--init-from", str(dest), "--dest", str(dest), "--steps", "3", *TINY]) == 0
    assert not (run / "init_model").exists()  # rank 0 makes that copy; rank 1 reads the source itself
    assert not (run / "provenance.json").exists() and not (run / "held_out_eval.json").exists()
    assert _json(dest / "provenance.json")["cumulative_steps"] == 2


def test_the_licence_names_each_real_source_of_the_lineage(tool):
    text = tool.licence_text(["brain2_mr", "brain1_mr"])
    assert text.splitlines()[0] == "Apache-2.0"
    text = " ".join(text.split())
    assert "brain1_mr: pyradiomics 3.1.0" in text and "brain2_mr" in text
    assert "BSD-3-Clause" in text and "Colin27" not in text and "MNI" not in text
    templates = tool.licence_text(["colin27_aal", "mni152_tissue"])
    templates = " ".join(templates.split())
    assert "GNU General Public License" in templates and "Louis Collins" in templates
    assert "pyradiomics" not in templates
    assert "make_phantom only (no real data)" in " ".join(tool.licence_text([]).split())


def test_evaluation_volumes_are_never_trained_on_unless_asked(tmp_path, tool, monkeypatch):
    """The bundled model's real figures must be figures on volumes it never saw."""
    dest = tmp_path / "dest"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0
    assert "(no real data)" in " ".join((dest / "LICENSE").read_text().split())
    assert _json(dest / "provenance.json")["seen_sources"] == []
    # an evaluation volume among the sources: refused before any training, saying what to do
    with pytest.raises(SystemExit, match=r"evaluation volumes \['colin27_aal'\].*--allow-evaluation-volumes"):
        tool.main(["--run", str(tmp_path / "run2"), "--init-from", str(dest), "--dest", str(dest), *TINY,
                   "--set", 'real_sources=["colin27_aal"]'])  # fmt: skip
    assert not (tmp_path / "run2" / "checkpoint_latest.pt").exists()
    # starting weights that saw one count too
    real_seen = tool.seen_sources  # run3 starts from (a copy of) weights that saw MNI152
    monkeypatch.setattr(tool, "seen_sources", lambda f: ("mni152_tissue",) if "run3" in str(f) else real_seen(f))
    with pytest.raises(SystemExit, match=r"\['mni152_tissue'\]"):
        tool.main(["--run", str(tmp_path / "run3"), "--init-from", str(dest), "--dest", str(dest), "--steps", "2", *TINY])
    # allowed on request, but such a model is not installed however well it scores
    tool.scores.update(model=(0.9, 0.9), init_model=(0.5, 0.5))
    assert tool.main(["--run", str(tmp_path / "run3"), "--init-from", str(dest), "--dest", str(dest), "--steps", "2",
                      "--allow-evaluation-volumes", *TINY]) == 0  # fmt: skip
    report = _json(tmp_path / "run3" / "held_out_eval.json")
    assert report["installed"] is False and "mni152_tissue" in report["decision"]
    assert _json(dest / "provenance.json")["cumulative_steps"] == 2


def test_install_rule_against_a_model_that_saw_evaluation_volumes(tool):
    """Against such a model (every bundled one up to session 9) the +5-click mean decides."""
    new = {"phantom_mean": 0.60, "real_score": 0.50, "real_plus5_mean": 0.65}
    old = {"phantom_mean": 0.61, "real_score": 0.53, "real_plus5_mean": 0.62}
    decide = tool._install_decision
    assert decide(new, old, (), ("brain1_mr",), 0.03)[0] is False  # a clean baseline: the real score
    ok, why = decide(new, old, ("brain1_mr",), ("colin27_aal", "mni152_tissue"), 0.03)
    assert ok and "+5-click mean only" in why
    assert decide({**new, "real_plus5_mean": 0.61}, old, (), ("colin27_aal",), 0.03)[0] is False
    assert decide({**new, "phantom_mean": 0.50}, old, (), ("colin27_aal",), 0.03)[0] is False  # phantom drop
    assert decide(new, None, (), (), 0.03) == (True, "nothing to compare with")
    assert decide(new, None, ("lung1_ct",), (), 0.03)[0] is False


def test_a_run_from_scratch_is_compared_with_the_installed_model(tmp_path, tool):
    dest = tmp_path / "dest"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(dest), "--from-scratch", "--steps", "2", *TINY]) == 0
    tool.scores.update(model=(0.5, 0.4), dest=(0.5, 0.45))
    assert tool.main(["--run", str(tmp_path / "run2"), "--dest", str(dest), "--from-scratch", "--steps", "3", *TINY]) == 0
    report = _json(tmp_path / "run2" / "held_out_eval.json")
    assert report["installed"] is False and report["previous"]["folder"] == str(dest)
    assert _json(dest / "provenance.json")["steps"] == 2


def test_weights_under_another_licence_are_never_bundled(tmp_path, tool):
    """The official weights are CC BY-NC-SA 4.0: neither they nor a model adapted from them may be
    installed as the package's default model, whatever it scores and even with --force."""
    dest, nc = tmp_path / "dest", tmp_path / "nc_weights"
    assert tool.main(["--run", str(tmp_path / "run1"), "--dest", str(nc), "--from-scratch", "--steps", "2", *TINY]) == 0
    (nc / "LICENSE").write_text("CC BY-NC-SA 4.0\nhttps://creativecommons.org/licenses/by-nc-sa/4.0/\n")
    with pytest.raises(SystemExit, match=r"licensed CC BY-NC-SA 4.0, not Apache-2.0.*nni_widget.train"):
        tool.main(["--run", str(tmp_path / "run2"), "--init-from", str(nc), "--dest", str(dest), "--steps", "2", *TINY])
    assert not (tmp_path / "run2" / "init_model").exists()  # refused before copying or training
    (nc / "LICENSE").unlink()
    with pytest.raises(SystemExit, match="unknown terms"):
        tool.main(["--run", str(tmp_path / "run3"), "--init-from", str(nc), "--dest", str(dest), "--steps", "2", *TINY])
    # a run trained elsewhere from such weights exports under their licence; installing it is refused
    from nni_widget.train import TrainConfig, train

    (nc / "LICENSE").write_text("CC BY-NC-SA 4.0\n")
    cfg = TrainConfig.from_dict({**tool.DEFAULT_CONFIG.to_dict(), **tool._overrides([t for t in TINY[:-2] if t != "--set"]),
                                 "steps": 1, "init_checkpoint": str(nc)})  # fmt: skip
    run = tmp_path / "elsewhere"
    train(cfg, run, progress=False, licence=tool.licence_text([]))
    assert load_model_folder(run / "model").licence_id == "CC BY-NC-SA 4.0"
    (run / "provenance.json").write_text(json.dumps({"command": "train() in a test", "training_wall_s": 1.0,
                                                     "previous_steps": 2}))  # fmt: skip
    tool.scores.update(model=(0.9, 0.9))
    with pytest.raises(SystemExit, match="the run's model"):
        tool.main(["--run", str(run), "--dest", str(dest), "--skip-training", "--force", *TINY])
    assert not dest.exists()


def test_the_default_recipe_builds_the_bundled_models_network(tool):
    """`python tools/train_default_model.py` continues the bundled model: its default network must
    be the bundled one (a deeper bundled model than the recipe is refused by grow_from)."""
    from nni_widget.data import default_model_folder
    from nni_widget.train._loop import build_network

    bundled = load_model_folder(default_model_folder(), device="cpu")
    _, net = build_network(tool.DEFAULT_CONFIG)
    assert net.grow_from(bundled.network.state_dict()) == []  # loads as it is: nothing added, nothing refused
    assert tuple(tool.DEFAULT_CONFIG.patch_size) == tuple(bundled.patch_size)
