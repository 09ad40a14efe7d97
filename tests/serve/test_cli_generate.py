"""`tilec generate`: streams a completion; bad arguments end in one line, never a traceback."""
import pytest
from click.testing import CliRunner

from tilec.cli import main


def _run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_generate_streams_and_reports(engine, cache_dir):
    r = _run("generate", "-p", "The capital of France is", "-n", "6", "--threads", "1",
             env={"TILEC_CACHE": str(cache_dir)})
    assert r.exit_code == 0, r.output
    assert "Paris" in r.stdout and "tokens/s" in r.stderr and "time to first token" in r.stderr


@pytest.mark.parametrize("args,msg", [
    (["--model", "/nope/model.gguf"], "/nope/model.gguf: no such file or directory"),
    (["-n", "0"], "Invalid value for '--max-tokens'"),
    (["--backend", "tpu"], "Invalid value for '--backend'"),
    (["--top-p", "0"], "Invalid value for '--top-p'"),
])
def test_bad_arguments_are_one_line(tmp_path, args, msg):
    r = _run("generate", "-p", "hi", *args, env={"TILEC_CACHE": str(tmp_path)})
    assert r.exit_code in (1, 2) and msg in r.output and "Traceback" not in r.output
