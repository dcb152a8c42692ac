"""One planning path (``fer_bench.planning.cells``) builds every cell: the pytest plugin's
``fer_cell`` and ``fer-bench run`` give the same ``Cell`` and digest for the same axis
values, every value is checked before data is loaded, and its errors name the front end's
option; a script's recipe override (``CellRequest.recipe``) gives the cell the direct
resolution gave. Nothing else in the package, ``benchmarks/`` or ``baselines/`` assembles
a cell, a recipe or a cleaning rule."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from fer_bench.cli.main import build_parser, main
from fer_bench.cli.run import load_run_data, plan_run
from fer_bench.errors import CellSkipped, ConfigError
from fer_bench.identity.cell import Cell
from fer_bench.models import get_model, unregister_model
from fer_bench.planning.cells import CellRequest, OptionNames, cleaning_of, plan_cell
from fer_bench.training.device import cpu_has_bf16
from fer_bench.training.resolve import resolve_cell, resolve_config
from tests.helpers.cells import BASE_ARGS, needs_dlib, tiny_model_conftest, write_ferplus_folder

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[2]
TINY = "planning_tiny"
#: The plugin's side: every fer_cell's axis values, cell and digest, one JSON line each.
MODULE = """
import json

CASES = {cases}


def _write(fer_cell, **axes):
    axes["init"] = getattr(axes["init"], "name", axes["init"])
    with open({out!r}, "a") as fh:
        fh.write(json.dumps({{"axes": axes, "cell": fer_cell.cell.to_dict(),
                             "digest": fer_cell.cell.digest()}}) + "\\n")
"""
GRID_TEST = """
def test_grid(fer_cell, fer_model, fer_variant, fer_split, fer_seed, fer_loss,
              fer_augmentation, fer_init, fer_alignment):
    _write(fer_cell, model=fer_model, variant=fer_variant, split=fer_split, seed=fer_seed,
           loss=fer_loss, augmentation=fer_augmentation, init=fer_init, alignment=fer_alignment)
"""
OWN_TEST = """
import pytest


@pytest.mark.parametrize("fer_model,fer_variant,fer_split,fer_seed,fer_loss,fer_augmentation,"
                         "fer_init,fer_alignment", CASES)
def test_own(fer_cell, fer_model, fer_variant, fer_split, fer_seed, fer_loss,
             fer_augmentation, fer_init, fer_alignment):
    _write(fer_cell, model=fer_model, variant=fer_variant, split=fer_split, seed=fer_seed,
           loss=fer_loss, augmentation=fer_augmentation, init=fer_init, alignment=fer_alignment)
"""
AXIS_FIELDS = ("model", "variant", "split", "seed", "loss", "augmentation", "init", "alignment")


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return write_ferplus_folder(tmp_path_factory.mktemp("planning") / "ferplus", n=120)


def plugin_cells(pytester, folder: Path, cases: list[tuple], *options: str,
                 own: bool) -> tuple[list[dict], pytest.RunResult]:
    """Run a module of ``fer_cell`` tests (``own``: parametrised over ``cases`` by the test
    itself, else by the options) and read back what each cell's fixture held."""
    out = pytester.path / "cells.jsonl"
    pytester.makepyfile(test_cells=MODULE.format(cases=repr(cases), out=str(out))
                        + (OWN_TEST if own else GRID_TEST))
    result = pytester.runpytest_inprocess("-s", "-rs", "--fer-data", str(folder), "--fer-plan", "off",
                                          "--fer-results", str(pytester.path / "results"),
                                          *BASE_ARGS, *options)
    lines = out.read_text().splitlines() if out.exists() else []
    out.unlink(missing_ok=True)
    return [json.loads(line) for line in lines], result


def cli_cell(folder: Path, axes: dict, *options: str) -> tuple[Cell, str]:
    """The cell ``fer-bench run`` plans for ``axes`` (its options spelled as a user would),
    on the data it loads: ``run_command`` up to the point it trains."""
    argv = ["run", "--model", axes["model"], "--variant", axes["variant"],
            "--split", axes["split"], "--seed", str(axes["seed"]), "--init", axes["init"],
            "--alignment", axes["alignment"], "--data", str(folder), *options]
    argv += ["--loss", axes["loss"]] if axes["loss"] else []
    argv += ["--augmentation", axes["augmentation"]] if axes["augmentation"] else []
    args = build_parser().parse_args(argv)
    plan = plan_run(args)
    cell = plan.cell(load_run_data(args, plan).fingerprint)
    return cell, cell.digest()


def assert_same_cells(folder: Path, planned: list[dict], *options: str) -> None:
    for entry in planned:
        cell, digest = cli_cell(folder, entry["axes"], *options)
        assert cell == Cell.from_dict(entry["cell"]), entry["axes"]
        assert digest == entry["digest"], entry["axes"]


def test_plugin_and_cli_build_the_same_cells_from_options(pytester, small_dir, tmp_path):
    weights = tmp_path / "start.pt"
    torch.save({"0.weight": torch.zeros(3)}, weights)
    axes = ["--fer-models", f"small_cnn,{TINY}", "--fer-variant", "nhot-1,nhot-8",
            "--fer-splits", "ordinary,complex", "--fer-seeds", "0,3", "--fer-loss", "mse,pld",
            "--fer-augmentation", "none,flip_rot20", "--fer-init", f"file:{weights}"]
    run_wide = ["--fer-epochs", "3", "--fer-precision", "bf16", "--fer-device", "cpu",
                "--fer-compile"]
    pytester.makeconftest(tiny_model_conftest(TINY))
    try:
        planned, result = plugin_cells(pytester, small_dir, [], *axes, *run_wide, own=False)
        result.assert_outcomes(passed=64)
        assert len({e["digest"] for e in planned}) == 64
        for entry in planned:            # the CLI is given the file's path, not its hash
            entry["axes"]["init"] = f"file:{weights}"
        assert_same_cells(small_dir, planned, "--epochs", "3", "--precision", "bf16",
                          "--device", "cpu", "--compile")
    finally:
        unregister_model(TINY)
    cell = Cell.from_dict(planned[0]["cell"])
    assert (cell.recipe.epochs, cell.precision, cell.recipe.compile) == (3, "bf16", "eval")


#: (model, variant, split, seed, loss, augmentation, init, alignment): defaults, the model's
#: own recipe, Microsoft's label modes and their cleaning rule.
OWN_CASES = [
    ("small_cnn", "nhot-8", "ordinary", 0, None, None, "scratch", "none"),
    ("fast_resnet", "nhot-3", "complex", 7, None, None, "scratch", "none"),
    ("fast_resnet", "ms-majority", "official-majority", 1, "cce", "flip_rot20", "scratch", "none"),
    ("small_cnn", "ms-probability", "official-majority", 2, None, None, "scratch", "none"),
]


def test_plugin_and_cli_build_the_same_cells_from_a_test_s_own_values(pytester, small_dir):
    skipped = ("small_cnn", "nhot-8", "ordinary", 0, None, None, "imagenet", "none")
    planned, result = plugin_cells(pytester, small_dir, [*OWN_CASES, skipped], own=True)
    result.assert_outcomes(passed=len(OWN_CASES), skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*model 'small_cnn' has no ImageNet weights*"])
    assert [tuple(e["axes"][f] for f in AXIS_FIELDS) for e in planned] == OWN_CASES
    assert_same_cells(small_dir, planned)
    # "auto" on a CPU: the model's cpu_precision where the CPU computes bf16 natively
    for entry in planned:
        model = entry["axes"]["model"]
        expected = get_model(model).cpu_precision if cpu_has_bf16() else "fp32"
        assert Cell.from_dict(entry["cell"]).precision == expected, model
    assert get_model("small_cnn").cpu_precision == "fp32" and get_model("fast_resnet").cpu_precision == "bf16"
    # the CLI skips the same cell, before it loads any data
    with pytest.raises(CellSkipped, match="has no ImageNet weights.*use --init scratch"):
        cli_cell(small_dir / "missing", dict(zip(AXIS_FIELDS, skipped, strict=True)))


@needs_dlib
def test_aligned_and_landmark_cells_are_the_same_through_both(pytester, small_dir):
    cases = [("small_cnn", "nhot-8", "ordinary", 0, None, None, "scratch", "dlib-hog"),
             ("small_cnn", "nhot-8", "ordinary", 0, None, "adaptive_x1=5_x2=15", "scratch",
              "none")]
    planned, result = plugin_cells(pytester, small_dir, cases, own=True)
    result.assert_outcomes(passed=2)
    assert_same_cells(small_dir, planned)
    fields = [Cell.from_dict(e["cell"]).alignment for e in planned]
    assert re.fullmatch(r"dlib-hog-[0-9a-f]{8}", fields[0])
    assert fields[1] == "landmarks-" + fields[0]
    plan = plan_cell(CellRequest(model="small_cnn", split="ordinary",
                                 augmentation="adaptive_x1=5_x2=15"))
    assert (plan.aligner, plan.alignment) == ("dlib-hog", fields[1])


def test_a_script_s_request_gives_the_cell_of_the_model_s_own_recipe():
    """What ``benchmarks/adaptive_sweep.py`` asks (no loss, init or precision): the recipe
    stays the model's, as the direct resolution gave it before the planning layer."""
    spec = get_model("fast_resnet")
    plan = plan_cell(CellRequest(model="fast_resnet", split="ordinary", seed=2, epochs=3,
                                 augmentation="flip_rot20", device="cpu"))
    direct = resolve_cell(spec, variant="nhot-8", split="ordinary", seed=2,
                          config=resolve_config(spec, epochs=3, augmentation="flip_rot20"),
                          dataset_fingerprint="abc", device="cpu")
    assert plan.cell("abc") == direct and plan.cell("abc").digest() == direct.digest()
    assert (plan.cleaning, plan.aligner, plan.init_path) == ("study", "none", None)


def test_a_batch_size_override_gives_the_cell_the_direct_resolution_gave():
    """``benchmarks/test_throughput.py``'s request: batch 64 over small_cnn's recipe, 1
    epoch, online flip + shift, as it was resolved before (resolve_config + resolve_cell)."""
    spec = get_model("small_cnn")
    for batch in (64, 5):
        plan = plan_cell(CellRequest(model="small_cnn", variant="nhot-8", split="ordinary",
                                     seed=3, epochs=1, augmentation="rand_flip_shift4",
                                     device="cpu", recipe={"batch_size": batch}))
        config = resolve_config(spec, epochs=1, augmentation="rand_flip_shift4",
                                batch_size=batch)
        direct = resolve_cell(spec, variant="nhot-8", split="ordinary", seed=3, config=config,
                              dataset_fingerprint="throughput", device="cpu")
        assert plan.config == config and plan.config.batch_size == batch
        assert plan.cell("throughput") == direct
        assert plan.cell("throughput").digest() == direct.digest()
    # the override is in the identity: another batch size is another cell
    plain = plan_cell(CellRequest(model="small_cnn", split="ordinary", device="cpu"))
    bigger = plan_cell(CellRequest(model="small_cnn", split="ordinary", device="cpu",
                                   recipe={"batch_size": 128, "lr": 3e-4, "tta": "flip"}))
    assert (bigger.config.batch_size, bigger.config.lr, bigger.config.tta) == (128, 3e-4, "flip")
    assert bigger.cell("abc").digest() != plain.cell("abc").digest()
    assert plan_cell(CellRequest(model="small_cnn", split="ordinary", device="cpu",
                                 recipe={"batch_size": None})).config == plain.config


def test_a_request_keeps_its_own_copy_of_the_recipe():
    asked = {"batch_size": 32}
    request = CellRequest(model="small_cnn", split="ordinary", device="cpu", recipe=asked)
    asked["batch_size"] = 7
    assert plan_cell(request).config.batch_size == 32


def _script(name: str):
    """``benchmarks/<name>.py`` imported as a module (the scripts are no package)."""
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scripts_recipes_and_cells_are_the_ones_resolved_directly():
    """``precision_probe`` (the model's own recipe, no cell) and ``checkpoint_cost`` (its
    probe cell) give what ``resolve_config(spec)`` / ``resolve_cell`` gave them before."""
    probe = _script("precision_probe")
    for name in probe.DEFAULT_MODELS.split(","):
        spec, config = probe.own_recipe(name)
        assert spec is get_model(name) and config == resolve_config(get_model(name)), name
    spec = get_model("small_cnn")
    _, record = _script("checkpoint_cost").build_run("small_cnn")
    assert record.cell == resolve_cell(spec, variant="nhot-8", split="ordinary", seed=0,
                                       config=resolve_config(spec), dataset_fingerprint="probe",
                                       device="cpu", precision="fp32")


def test_a_stored_cell_s_cleaning_rule_is_its_plan_s():
    """``benchmarks/backfill_records.py`` holds cells read from a store, not requests."""
    for variant, split, rule in [("nhot-3", "ordinary", "study"),
                                 ("ms-majority", "official-majority", "ferplus-ms")]:
        plan = plan_cell(CellRequest(model="small_cnn", variant=variant, split=split,
                                     device="cpu"))
        assert cleaning_of(plan.cell("abc")) == plan.cleaning == rule
    odd = Cell.from_dict({**plan.cell("abc").to_dict(), "split": "ordinary"})
    with pytest.raises(ConfigError, match="needs data cleaned by rule 'ferplus-ms'"):
        cleaning_of(odd)


@pytest.mark.parametrize(("recipe", "expected"), [
    ({"batchsize": 64}, "unknown recipe field 'batchsize': not a TrainConfig field; "
                        "did you mean: batch_size"),
    ({"epochs": 3}, "recipe field 'epochs' is a CellRequest field of its own: "
                    "set CellRequest(epochs=...)"),
    ({"loss": "pld"}, "recipe field 'loss' is a CellRequest field of its own"),
    ({"batch_size": "64"}, "recipe field 'batch_size' must be a whole number, got '64'"),
    ({"batch_size": 64.0}, "recipe field 'batch_size' must be a whole number, got 64.0"),
    ({"lr": True}, "recipe field 'lr' must be a number, got True"),
    ({"batch_size": 0}, "epochs, batch_size and input_size must be >= 1"),
    ({"optimizer": "lbfgs"}, "lbfgs"),
])
def test_a_bad_recipe_override_is_one_line_naming_the_field(recipe, expected):
    with pytest.raises(ConfigError) as caught:
        plan_cell(CellRequest(model="small_cnn", split="ordinary", device="cpu", recipe=recipe))
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    named = OptionNames({"recipe": "--set"}, prefix="argument ")
    with pytest.raises(ConfigError, match="^argument --set: "):
        plan_cell(CellRequest(model="small_cnn", split="ordinary", device="cpu", recipe=recipe),
                  named)


@pytest.mark.parametrize(("request_", "names", "expected"), [
    (CellRequest(model="small_cnn", split="ordinary", seed=-1), None,
     "seed must be a whole number >= 0, got -1"),
    (CellRequest(model="small_cnn", split="ordinary", seed=True), None,
     "seed must be a whole number >= 0, got True"),
    (CellRequest(model="small_cnn", split="ordinary", epochs=0), OptionNames({"epochs": "--fer-epochs"}),
     "--fer-epochs: epochs must be a whole number >= 1, got 0"),
    (CellRequest(model="small_cnn", split="ordinary", precision="fp16"),
     OptionNames({"precision": "--precision"}, prefix="argument "),
     "argument --precision: unknown precision 'fp16'; valid: auto, fp32, bf16"),
    (CellRequest(model="small_cnn", split="ordinary", device="gpu"),
     OptionNames({"device": "--fer-device"}), "--fer-device: unknown device 'gpu'"),
    (CellRequest(model="small_cnn", split="ordinary", alignment="dlib-hgo"), None,
     "unknown aligner 'dlib-hgo'; did you mean: dlib-hog"),
    (CellRequest(model="small_cnn", split="ordinary", variant="ms-majority"),
     OptionNames({"split": "--split"}, prefix="argument "),
     "argument --split: label treatment 'ms-majority' needs data cleaned by rule 'ferplus-ms'"),
    (CellRequest(model="small_cnn", split="ordinary", init="imagnet"),
     OptionNames({"init": "--init"}, prefix="argument "),
     "unknown init 'imagnet' (--init); did you mean: imagenet?"),
    (CellRequest(model="smal_cnn", split="ordinary"),
     OptionNames({"model": "--model"}, prefix="argument "),
     "argument --model: unknown model 'smal_cnn'; did you mean: small_cnn"),
])
def test_a_bad_value_is_one_line_naming_its_option(request_, names, expected):
    with pytest.raises(ConfigError) as caught:
        plan_cell(request_, names)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_value_error_wins_over_a_skip():
    """A cell that cannot be (ms-* on ordinary) fails even when its init would skip it."""
    with pytest.raises(ConfigError, match="needs data cleaned"):
        plan_cell(CellRequest(model="small_cnn", split="ordinary", variant="ms-majority",
                              init="imagenet"))


def test_run_checks_every_option_before_loading_data(monkeypatch, capsys):
    import fer_bench.data.cache

    def no_load(*args, **kwargs):
        raise AssertionError("data loaded before the options were checked")

    monkeypatch.setattr(fer_bench.data.cache, "load_dataset", no_load)
    cuda = [] if torch.cuda.is_available() else [(["--device", "cuda"], "argument --device: "
                                                  "'cuda' asked for, but CUDA is not available")]
    for extra, expected in [(["--augmentation", "flip_rot25"], "argument --augmentation: "),
                            (["--variant", "ms-majority"], "argument --split: label treatment"),
                            (["--init", "imagenet"], "use --init scratch"), *cuda]:
        code = main(["run", "--model", "small_cnn", "--split", "ordinary", *extra])
        err = capsys.readouterr().err
        assert code in (1, 2) and expected in err and "Traceback" not in err, err


#: Calls that put an identity (or its recipe, or its data's cleaning rule) together; only
#: the planning layer and the modules that define them may make them.
ASSEMBLY = {"resolve_cell", "resolve_config", "resolve_alignment", "cleaning_rule"}
ALLOWED = {"fer_bench/planning/cells.py",          # the one path
           "fer_bench/training/resolve.py",         # defines resolve_cell, resolve_config
           "fer_bench/training/tasks.py",           # defines cleaning_rule, checks data with it
           "fer_bench/data/align/axis.py"}          # defines resolve_alignment
#: Where the package, its scripts and the baseline plug-ins live.
SCANNED = ("fer_bench", "benchmarks", "baselines")


def assembly_calls(rel: str, source: str) -> list[str]:
    """``path:line: name(...)`` of each call of an ``ASSEMBLY`` function (by name or as an
    attribute) in ``source``, unless ``rel`` is ``ALLOWED``."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in ASSEMBLY and rel not in ALLOWED:
                calls.append(f"{rel}:{node.lineno}: {name}(...)")
    return calls


def test_the_scan_finds_a_direct_call():
    source = ("from fer_bench.training import tasks\n"
              "config = resolve_config(spec, batch_size=2)\n"
              "rule = tasks.cleaning_rule(variant, split)\n")
    assert assembly_calls("benchmarks/new.py", source) == [
        "benchmarks/new.py:2: resolve_config(...)", "benchmarks/new.py:3: cleaning_rule(...)"]
    assert assembly_calls("fer_bench/planning/cells.py", source) == []


def test_no_second_copy_of_the_planning_path():
    sources = [path for top in SCANNED for path in sorted((REPO / top).rglob("*.py"))
               if "egg-info" not in path.as_posix()]
    rels = {path.relative_to(REPO).as_posix() for path in sources}
    calls = [call for path in sources
             for call in assembly_calls(path.relative_to(REPO).as_posix(),
                                        path.read_text(encoding="utf-8"))]
    assert calls == []
    assert len(sources) > 50   # the package was read
    assert {f"benchmarks/{name}.py" for name in ("test_throughput", "checkpoint_cost",
                                                 "precision_probe", "backfill_records",
                                                 "adaptive_sweep")} <= rels
    assert any(rel.startswith("baselines/fer_baselines/") for rel in rels)
